"""The encoder-decoder: padding is never read, attention is masked and normalized, and the
teacher-forced forward pass is the exported step applied position by position."""

import pytest
import torch

from training.models.seq2seq import DecoderStepGraph, Seq2Seq


@pytest.fixture(params=["gru", "lstm"])
def model(request) -> Seq2Seq:
    torch.manual_seed(0)
    model = Seq2Seq(
        30, 40, embedding_dim=8, encoder_hidden=6, decoder_hidden=10, cell=request.param
    )
    return model.eval()


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, torch.tensor([len(r) for r in rows])


def test_a_sentence_encodes_the_same_alone_and_padded(model):
    short, long = [5, 6, 3], [7, 8, 9, 10, 11, 12, 3]
    with torch.no_grad():
        alone = model.encode(*padded([short]))
        batched = model.encode(*padded([short, long]))
    torch.testing.assert_close(batched[0][0, :3], alone[0][0])
    assert torch.all(batched[0][0, 3:] == 0)
    for a, b in zip(alone[1:3], batched[1:3], strict=True):
        torch.testing.assert_close(b[0], a[0])
    assert batched[3].tolist() == [[True] * 3 + [False] * 4, [True] * 7]


def test_attention_is_zero_on_padding_and_sums_to_one(model):
    ids, lengths = padded([[5, 6, 3], [7, 8, 9, 10, 3]])
    with torch.no_grad():
        states, hidden, feed, mask = model.encode(ids, lengths)
        log_probs, _, _, attention = DecoderStepGraph(model)(
            torch.tensor([2, 2]), hidden, feed, states, mask
        )
    assert torch.all(attention[0, 3:] == 0)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2))


def test_teacher_forcing_equals_stepwise_decoding(model):
    ids, lengths = padded([[5, 6, 3], [7, 8, 9, 10, 3]])
    tgt_in = torch.tensor([[2, 11, 12, 13], [2, 14, 15, 0]])
    with torch.no_grad():
        logits = model.generate(model(ids, lengths, tgt_in))
        states, hidden, feed, mask = model.encode(ids, lengths)
        for t in range(tgt_in.shape[1]):
            step_logits, hidden, feed, _ = model.decode_step(
                tgt_in[:, t], hidden, feed, states, mask
            )
            torch.testing.assert_close(step_logits, logits[:, t])


def test_tied_output_layer_shares_the_target_embeddings(model):
    assert model.output.weight is model.tgt_embedding.weight
    untied = Seq2Seq(
        30, 40, embedding_dim=8, encoder_hidden=6, decoder_hidden=10, tie_embeddings=False
    )
    assert untied.output.weight.shape == (40, 10)
