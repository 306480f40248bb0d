"""Greedy and beam search over stub step functions whose log-probabilities depend on the whole
prefix, so that every search decision matters."""

import itertools

import numpy as np
import pytest

from service.predictors.decoding import (
    SAMPLE_STRIDE,
    _top_candidates,
    beam_search,
    greedy_search,
    max_lengths,
)

BOS, EOS = 0, 1
VOCAB = 4  # bos (never produced), eos, and tokens 2, 3
SRC_LEN = 3


def stub_step(seed: int = 0, eos_bias: float = 0.0):
    """A step function with prefix-dependent log-probabilities: the state is a code of the
    prefix; the attention row is a softmax derived from the same code."""

    def table(code: int) -> np.ndarray:
        logits = np.random.default_rng([seed, code]).normal(scale=2.0, size=VOCAB)
        logits[BOS] = -np.inf
        logits[EOS] += eos_bias
        return logits - np.logaddexp.reduce(logits[1:])

    def step(prev, state):
        codes = state["code"] * (VOCAB + 1) + prev + 1
        log_probs = np.stack([table(int(c)) for c in codes])
        attention = np.stack(
            [np.random.default_rng([seed, int(c), 7]).dirichlet(np.ones(SRC_LEN)) for c in codes]
        )
        return log_probs, {"code": codes, "src": state["src"]}, attention

    return step, table


def initial_state(batch: int) -> dict[str, np.ndarray]:
    return {"code": np.arange(batch, dtype=np.int64) * 1000, "src": np.zeros((batch, SRC_LEN))}


def exhaustive_best(table, start_code: int, max_len: int, alpha: float):
    """Every sequence ending in eos within ``max_len`` tokens (eos forced at ``max_len``)."""
    best = None
    for length in range(1, max_len + 1):
        for body in itertools.product([2, 3], repeat=length - 1):
            code, prev, total = start_code, BOS, 0.0
            for token in [*body, EOS]:
                code = code * (VOCAB + 1) + prev + 1
                log_probs = table(code)
                if len(body) + 1 == max_len and token == EOS:
                    pass  # eos forced at the last step: its log-probability is kept
                total += log_probs[token]
                prev = token
            key = total / length**alpha
            if best is None or key > best[0]:
                best = (key, list(body), total / length)
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(6))
def test_a_wide_beam_finds_the_exhaustive_optimum(seed, alpha):
    step, table = stub_step(seed)
    limits = np.array([4, 3])
    hyps = beam_search(
        step,
        initial_state(2),
        bos_id=BOS,
        eos_id=EOS,
        beam_size=16,  # more than the 15 possible sequences
        max_lengths=limits,
        length_penalty=alpha,
    )
    for b, hyp in enumerate(hyps):
        _, tokens, average = exhaustive_best(table, b * 1000, int(limits[b]), alpha)
        assert hyp.tokens == tokens
        assert hyp.score == pytest.approx(average)


@pytest.mark.parametrize("seed", range(8))
def test_greedy_is_beam_search_of_size_one(seed):
    step, _ = stub_step(seed)
    limits = np.array([6, 2, 5])
    greedy = greedy_search(step, initial_state(3), bos_id=BOS, eos_id=EOS, max_lengths=limits)
    beam = beam_search(
        step, initial_state(3), bos_id=BOS, eos_id=EOS, beam_size=1, max_lengths=limits
    )
    for g, b in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score)
        np.testing.assert_allclose(g.attention, b.attention)


def test_length_normalization_prefers_longer_translations():
    # First step: eos or token 2, p = 0.5 each; after token 2, eos with p = 0.9.
    # Sums: [] -0.69 > [2] -0.80; averages: [2] -0.40 > [] -0.69.
    def step(prev, state):
        log_probs = np.full((len(prev), VOCAB), -np.inf)
        first = prev == BOS
        log_probs[first, EOS] = log_probs[first, 2] = np.log(0.5)
        log_probs[~first, EOS], log_probs[~first, 3] = np.log(0.9), np.log(0.1)
        return log_probs, state, np.full((len(prev), SRC_LEN), 1 / SRC_LEN)

    common = dict(bos_id=BOS, eos_id=EOS, beam_size=2, max_lengths=np.full(2, 5))
    (raw, _) = beam_search(step, initial_state(2), length_penalty=0.0, **common)
    (normalized, _) = beam_search(step, initial_state(2), length_penalty=1.0, **common)
    assert raw.tokens == [] and raw.score == pytest.approx(np.log(0.5))
    assert normalized.tokens == [2]
    assert normalized.score == pytest.approx((np.log(0.5) + np.log(0.9)) / 2)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_maximum_length_forces_eos(search):
    step, _ = stub_step(seed=1, eos_bias=-50.0)  # eos practically never chosen freely
    limits = np.array([1, 3, 5])
    if search == "greedy":
        hyps = greedy_search(step, initial_state(3), bos_id=BOS, eos_id=EOS, max_lengths=limits)
    else:
        hyps = beam_search(
            step, initial_state(3), bos_id=BOS, eos_id=EOS, beam_size=3, max_lengths=limits
        )
    assert [len(h.tokens) for h in hyps] == [0, 2, 4]
    for hyp in hyps:
        assert EOS not in hyp.tokens and BOS not in hyp.tokens
        assert hyp.attention.shape == (len(hyp.tokens) + 1, SRC_LEN)
        np.testing.assert_allclose(hyp.attention.sum(axis=1), 1.0)


def test_eos_ends_a_sentence_and_decoding_stops_when_all_have_ended():
    calls = []

    def step(prev, state):
        calls.append(len(prev))
        log_probs = np.full((len(prev), VOCAB), -10.0)
        log_probs[:, 2] = np.log(0.4)
        log_probs[:, EOS] = np.log(0.6)  # eos first: every beam should end at once
        return log_probs, state, np.full((len(prev), SRC_LEN), 1 / SRC_LEN)

    hyps = beam_search(
        step, initial_state(2), bos_id=BOS, eos_id=EOS, beam_size=2, max_lengths=np.full(2, 50)
    )
    assert [h.tokens for h in hyps] == [[], []]
    assert hyps[0].score == pytest.approx(np.log(0.6))
    assert len(calls) == 2  # one step ends the first beam, the next the second: no more
    greedy_calls = len(calls)
    greedy = greedy_search(
        step, initial_state(2), bos_id=BOS, eos_id=EOS, max_lengths=np.full(2, 50)
    )
    assert [h.tokens for h in greedy] == [[], []] and len(calls) == greedy_calls + 1


def test_sentences_decode_the_same_alone_and_batched():
    step, _ = stub_step(seed=5)
    limits = np.array([5, 4, 6])
    together = beam_search(
        step, initial_state(3), bos_id=BOS, eos_id=EOS, beam_size=3, max_lengths=limits
    )
    for b in range(3):
        state = {k: v[b : b + 1] for k, v in initial_state(3).items()}
        (alone,) = beam_search(
            step, state, bos_id=BOS, eos_id=EOS, beam_size=3, max_lengths=limits[b : b + 1]
        )
        assert alone.tokens == together[b].tokens
        assert alone.score == pytest.approx(together[b].score)


def test_max_lengths_grow_with_the_source_and_respect_the_cap():
    np.testing.assert_array_equal(max_lengths(np.array([0, 4, 100]), 1.5, 10, cap=50), [10, 16, 50])


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_sentence_that_has_ended_leaves_the_batch(beam_size):
    """Sentence 0 can only say eos; sentence 1 rarely does: after the first step only sentence
    1's rows are run, with its own state rows."""
    calls: list[list[int]] = []

    def step(prev, state):
        calls.append(sorted(set(state["sentence"].tolist())))
        log_probs = np.full((len(prev), VOCAB), -np.inf)
        ends = state["sentence"] == 0
        log_probs[ends, EOS] = 0.0
        log_probs[~ends, 2] = np.log(0.69)
        log_probs[~ends, 3] = np.log(0.3)
        log_probs[~ends, EOS] = np.log(0.01)
        return log_probs, state, np.full((len(prev), SRC_LEN), 1 / SRC_LEN)

    state = {"sentence": np.array([0, 1])}
    common = dict(bos_id=BOS, eos_id=EOS, max_lengths=np.array([10, 6]))
    if beam_size == 1:
        hyps = greedy_search(step, state, **common)
    else:
        hyps = beam_search(step, state, beam_size=beam_size, **common)

    assert hyps[0].tokens == [] and hyps[1].tokens[:2] == [2, 2]
    assert calls[0] == [0, 1] and len(calls) > 2
    assert all(sentences == [1] for sentences in calls[1:])


def test_shared_state_follows_the_sentences_not_the_beams():
    """A ``shared`` entry (the encoder's states) is passed on as the same array while every
    sentence is still decoding and is cut with the sentences when one leaves, so its rows still
    belong to the beams' sentences; the results are those of reordering it at every step."""
    base_step, _ = stub_step(seed=3, eos_bias=-1.0)
    seen: list[np.ndarray] = []

    def step(prev, state):
        # "owner" is reordered with the beams: every row must still hold its own sentence's
        np.testing.assert_array_equal(state["sentence"], state["owner"])
        seen.append(state["sentence"])
        log_probs, next_state, attention = base_step(prev, state)
        kept = {"owner": state["owner"], "sentence": state["sentence"]}
        return log_probs, {**next_state, **kept}, attention

    def search(shared):
        seen.clear()
        state = initial_state(3) | {"owner": np.arange(3), "sentence": np.arange(3)}
        limits = np.array([3, 7, 5])
        hyps = beam_search(
            step, state, bos_id=BOS, eos_id=EOS, beam_size=3, max_lengths=limits, shared=shared
        )
        return hyps, list(seen)

    reordered, _ = search(shared=())
    hyps, arrays = search(shared=("sentence",))

    assert [h.tokens for h in hyps] == [h.tokens for h in reordered]
    assert [h.score for h in hyps] == [h.score for h in reordered]
    sizes = [len(a) for a in arrays]
    assert sizes[0] == 9 and sizes[-1] < 9  # a sentence left the batch on the way
    for before, after in itertools.pairwise(arrays):
        assert (after is before) == (len(after) == len(before))


@pytest.mark.parametrize("vocab", [5, 8 * SAMPLE_STRIDE, 3000])
@pytest.mark.parametrize("seed", range(4))
def test_candidates_are_the_best_of_every_token_of_every_beam(vocab, seed):
    """A beam step's candidates, found from a sample of each row, are exactly the best ``n`` of
    all ``beam * vocab`` extensions of each sentence (``n`` at most the vocabulary), ties going
    to the smaller flat index, with beams not yet expanded (-inf), rows where only eos is left
    and many equal log-probabilities."""
    rng = np.random.default_rng(seed)
    sentences, k = 7, 4
    n = 2 * k
    log_probs = np.round(rng.normal(scale=3.0, size=(sentences * k, vocab)), 1).astype(np.float32)
    scores = np.round(rng.normal(scale=5.0, size=(sentences, k)), 1)
    scores[0, 1:] = -np.inf  # the first step: only the first beam is expanded
    forced = rng.random(sentences * k) < 0.25
    log_probs[forced, :EOS] = log_probs[forced, EOS + 1 :] = -np.inf

    flat, values = _top_candidates(scores, log_probs, n)

    every = (scores[:, :, None] + log_probs.reshape(sentences, k, vocab)).reshape(sentences, -1)
    for s in range(sentences):
        order = np.lexsort((np.arange(k * vocab), -every[s]))
        expected = [i for i in order[: min(n, vocab)] if every[s, i] > -np.inf]
        assert flat[s, : len(expected)].tolist() == expected
        np.testing.assert_array_equal(values[s, : len(expected)], every[s, expected])
        assert np.all(values[s, len(expected) :] == -np.inf)


def test_beam_search_names_a_sentence_that_no_finite_hypothesis_ends() -> None:
    step, _ = stub_step(seed=1)

    def eos_impossible(prev, state):
        log_probs, state, attention = step(prev, state)
        log_probs[:, EOS] = -np.inf
        return log_probs, state, attention

    with pytest.raises(ValueError, match="sentence 0: no hypothesis ended with a finite score"):
        beam_search(
            eos_impossible,
            initial_state(1),
            bos_id=BOS,
            eos_id=EOS,
            beam_size=2,
            max_lengths=np.array([3]),
        )
