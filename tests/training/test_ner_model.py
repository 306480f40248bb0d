"""The NER model's parts: the torch CRF against brute force and against the numpy decoder,
padding invariance of the character CNN and of the emission network, the CoNLL reader."""

import itertools

import numpy as np
import pytest
import torch

from service.predictors.viterbi import CrfParameters, forward_backward, viterbi_decode
from training.data import NER_TAGS, DataError, read_conll
from training.models.crf import CRF, FORBIDDEN, iob2_constraints
from training.models.ner import CharCNN, NerEmissions, WordEmbedding
from training.models.rnn import length_mask


def random_crf(seed: int, num_tags: int, constrained: bool = False) -> CRF:
    torch.manual_seed(seed)
    tags = NER_TAGS[:num_tags]
    crf = CRF(num_tags, iob2_constraints(tags) if constrained else None)
    with torch.no_grad():
        for parameter in (crf.transitions, crf.start, crf.end):
            parameter.normal_()
    return crf


def random_batch(seed: int, num_tags: int, max_len: int = 4):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (3,), generator=generator)
    emissions = torch.randn(3, max_len, num_tags, generator=generator) * 2
    return emissions, lengths, length_mask(lengths, max_len)


def brute_force(crf: CRF, emissions, length) -> dict[tuple, float]:
    scores = {}
    for tags in itertools.product(range(crf.num_tags), repeat=length):
        padded = torch.tensor([list(tags) + [0] * (emissions.shape[0] - length)])
        mask = length_mask(torch.tensor([length]), emissions.shape[0])
        scores[tags] = crf.sequence_score(emissions[None], padded, mask).item()
    return scores


def explicit_score(crf: CRF, emissions, tags) -> float:
    transitions, start, end = (t.detach() for t in crf.scores())
    score = start[tags[0]] + end[tags[-1]] + sum(emissions[t, k] for t, k in enumerate(tags))
    return float(score + sum(transitions[a, b] for a, b in itertools.pairwise(tags)))


@pytest.mark.parametrize("seed", range(12))
def test_crf_nll_uses_the_exact_log_partition(seed):
    num_tags = 2 + seed % 3
    crf = random_crf(seed, num_tags)
    emissions, lengths, mask = random_batch(seed, num_tags)
    log_z = crf.log_partition(emissions, mask)
    for row, length in enumerate(lengths.tolist()):
        scores = brute_force(crf, emissions[row], length)
        tags = next(iter(scores))
        assert scores[tags] == pytest.approx(explicit_score(crf, emissions[row], tags), abs=1e-4)
        assert log_z[row].item() == pytest.approx(
            torch.logsumexp(torch.tensor(list(scores.values())), 0).item(), abs=1e-4
        )
    gold = torch.randint(0, num_tags, emissions.shape[:2])
    expected = (log_z - crf.sequence_score(emissions, gold, mask)).mean()
    assert crf.nll(emissions, gold, mask).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("seed", range(12))
def test_crf_decode_finds_the_best_sequence_like_the_numpy_decoder(seed):
    num_tags = 3 + seed % 3
    crf = random_crf(seed, num_tags, constrained=seed % 2 == 0)
    emissions, lengths, mask = random_batch(seed, num_tags)
    decoded = crf.decode(emissions, mask)
    for row, length in enumerate(lengths.tolist()):
        scores = brute_force(crf, emissions[row], length)
        assert tuple(decoded[row]) == max(scores, key=scores.get)
    transitions, start, end = (t.detach().double().numpy() for t in crf.scores())
    parameters = CrfParameters(tuple(NER_TAGS[:num_tags]), transitions, start, end)
    numpy_paths = viterbi_decode(emissions.numpy(), lengths.numpy(), parameters)
    assert [p.tolist() for p in numpy_paths] == decoded


def test_iob2_constraints_forbid_only_i_tags_out_of_place():
    allowed, start, end = iob2_constraints(NER_TAGS)
    index = NER_TAGS.index
    assert not allowed[index("O"), index("I-PER")]
    assert not allowed[index("B-LOC"), index("I-PER")]
    assert allowed[index("B-PER"), index("I-PER")] and allowed[index("I-PER"), index("I-PER")]
    assert allowed[index("I-PER"), index("B-PER")] and allowed[index("I-ORG"), index("O")]
    assert start.tolist() == [not t.startswith("I-") for t in NER_TAGS]
    assert end.all()
    assert int((~allowed).sum()) == 4 * (len(NER_TAGS) - 2)


def test_a_constrained_crf_never_decodes_invalid_iob2():
    crf = random_crf(0, len(NER_TAGS), constrained=True)
    emissions = torch.randn(50, 8, len(NER_TAGS)) * 5
    mask = torch.ones(50, 8, dtype=torch.bool)
    for path in crf.decode(emissions, mask):
        tags = ["O"] + [NER_TAGS[k] for k in path]
        for previous, tag in itertools.pairwise(tags):
            assert not tag.startswith("I-") or previous[2:] == tag[2:]
    invalid = torch.tensor([[NER_TAGS.index("O"), NER_TAGS.index("I-PER")] + [0] * 6])
    assert crf.nll(emissions[:1], invalid, mask[:1]).item() > -FORBIDDEN / 2


def test_char_cnn_features_do_not_depend_on_padding():
    torch.manual_seed(0)
    cnn = CharCNN(num_chars=20, char_dim=5, filters=7, width=3, dropout=0.5).eval()
    word = [4, 9, 2]
    narrow = torch.tensor([[word]])  # (1, 1, 3)
    wide = torch.zeros(2, 3, 12, dtype=torch.long)  # more words, more characters
    wide[1, 2, :3] = torch.tensor(word)
    wide[0, 0, :12] = torch.arange(2, 14)
    assert torch.allclose(cnn(narrow)[0, 0], cnn(wide)[1, 2], atol=1e-6)
    assert (cnn(wide)[1, 0] == -1.0).all()  # a padded token pools to the fill value


def test_emissions_of_a_sentence_do_not_depend_on_its_batch():
    torch.manual_seed(0)
    model = NerEmissions(
        50, 20, 9, len(NER_TAGS), hidden_size=8, char_filters=6, trainable_words=10
    )
    model.eval()
    words, cases = torch.tensor([[5, 12, 30]]), torch.tensor([[3, 5, 4]])
    chars = torch.tensor([[[2, 3, 0], [4, 0, 0], [5, 6, 7]]])
    alone = model(words, cases, chars, torch.tensor([3]))
    batch_words = torch.zeros(3, 9, dtype=torch.long)
    batch_cases = torch.zeros(3, 9, dtype=torch.long)
    batch_chars = torch.zeros(3, 9, 15, dtype=torch.long)
    batch_words[1, :3], batch_cases[1, :3], batch_chars[1, :3, :3] = words, cases, chars
    batch_words[0], batch_cases[0], batch_chars[0] = 7, 3, 2  # a longer neighbour, longer words
    batch_words[2, :1], batch_cases[2, :1], batch_chars[2, :1, :1] = 9, 3, 8
    batched = model(batch_words, batch_cases, batch_chars, torch.tensor([9, 3, 1]))
    assert torch.allclose(alone[0], batched[1, :3], atol=1e-5)


def test_word_embedding_learns_the_first_rows_and_keeps_the_rest():
    vectors = torch.randn(10, 4)
    vectors[0] = 0
    embedding = WordEmbedding(10, 4, trainable=6)
    embedding.load_vectors(vectors)
    ids = torch.tensor([[0, 1, 5, 6, 9]])
    assert torch.equal(embedding(ids), vectors[ids])
    embedding(ids).sum().backward()
    assert [n for n, p in embedding.named_parameters()] == ["learned.weight"]
    assert embedding.learned.weight.grad[5].abs().sum() > 0
    with pytest.raises(ValueError):
        WordEmbedding(10, 4, trainable=11)


def test_read_conll_skips_docstart_and_blank_lines(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n-DOCSTART- -X- -X- O\nBRUSSELS X X B-LOC",
        "utf-8",
    )
    assert read_conll(path) == [
        [("EU", "B-ORG"), ("rejects", "O")],
        [("Peter", "B-PER"), ("Blackburn", "I-PER")],
        [("BRUSSELS", "B-LOC")],
    ]
    path.write_text("lonely\n", "utf-8")
    with pytest.raises(ValueError, match=":1:"):
        read_conll(path)


@pytest.mark.parametrize("tag", ["PER", "B_PER", "B-", "b-PER", "X-PER"])
def test_read_conll_refuses_a_tag_that_is_not_iob2_with_its_line(tmp_path, tag):
    path = tmp_path / "tags.txt"
    path.write_text(f"EU NNP B-NP B-ORG\nPeter NNP B-NP {tag}\n", "utf-8")
    with pytest.raises(DataError, match=rf"tags.txt:2: tag '{tag}' is not O, B-TYPE or I-TYPE"):
        read_conll(path)


@pytest.mark.parametrize(
    ("tags", "first_bad", "says"),
    [
        # IOB1: an entity starts with I- (B- only between two of a type)
        (["I-PER", "I-PER"], 0, "looks like IOB1.*IOB2"),
        (["B-LOC", "O", "I-LOC"], 2, "looks like IOB1.*IOB2"),
        # an I- of another type starts an entity too: a wrong type, or IOB1
        (
            ["B-ORG", "I-ORG", "I-LOC"],
            2,
            "cannot follow 'I-ORG': I- continues.*if the file is IOB1",
        ),
    ],
)
def test_read_conll_refuses_an_entity_that_starts_with_i(tmp_path, tags, first_bad, says):
    path = tmp_path / "iob1.txt"
    lines = ["-DOCSTART- -X- -X- O", "", "EU NNP B-NP B-ORG", ""]
    lines += [f"w{i} NNP I-NP {tag}" for i, tag in enumerate(tags)]
    path.write_text("\n".join(lines), "utf-8")
    line, tag = 5 + first_bad, tags[first_bad]

    with pytest.raises(ValueError, match=rf"iob1.txt:{line}: .*'{tag}'.*{says}"):
        read_conll(path)


def test_read_conll_accepts_iob2_entities_of_one_or_more_tokens(tmp_path):
    path = tmp_path / "iob2.txt"
    tags = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-MISC", "I-MISC", "I-MISC"]
    path.write_text("\n".join(f"w{i} X X {t}" for i, t in enumerate(tags)), "utf-8")

    assert [t for _, t in read_conll(path)[0]] == tags


def test_torch_crf_scores_match_numpy_probabilities():
    crf = random_crf(3, 4)
    emissions, lengths, mask = random_batch(3, 4)
    transitions, start, end = (t.detach().double().numpy() for t in crf.scores())
    parameters = CrfParameters(tuple(NER_TAGS[:4]), transitions, start, end)
    posterior = forward_backward(emissions.double().numpy(), lengths.numpy(), parameters)
    np.testing.assert_allclose(
        posterior.log_z, crf.log_partition(emissions, mask).detach().numpy(), atol=1e-4
    )
