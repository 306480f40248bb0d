"""numpy CRF inference against brute force over every tag sequence of small random cases."""

import itertools

import numpy as np
import pytest

from service.predictors.viterbi import CrfParameters, forward_backward, viterbi_decode


def random_case(seed: int, max_tags: int = 4, max_len: int = 4):
    rng = np.random.default_rng(seed)
    num_tags = int(rng.integers(2, max_tags + 1))
    crf = CrfParameters(
        tags=tuple(f"t{k}" for k in range(num_tags)),
        transitions=rng.normal(size=(num_tags, num_tags)),
        start=rng.normal(size=num_tags),
        end=rng.normal(size=num_tags),
    )
    lengths = rng.integers(1, max_len + 1, size=int(rng.integers(1, 4)))
    # Padding holds large garbage: results must not depend on it.
    emissions = rng.normal(scale=10.0, size=(len(lengths), max_len + 1, num_tags))
    for row, length in enumerate(lengths):
        emissions[row, :length] = rng.normal(size=(length, num_tags))
    return emissions, lengths, crf


def path_score(emissions: np.ndarray, tags: tuple[int, ...], crf: CrfParameters) -> float:
    score = crf.start[tags[0]] + crf.end[tags[-1]]
    score += sum(emissions[t, k] for t, k in enumerate(tags))
    score += sum(crf.transitions[a, b] for a, b in itertools.pairwise(tags))
    return float(score)


def all_paths(emissions: np.ndarray, length: int, crf: CrfParameters) -> dict[tuple, float]:
    sequences = itertools.product(range(crf.num_tags), repeat=length)
    return {tags: path_score(emissions[:length], tags, crf) for tags in sequences}


def probabilities(paths: dict[tuple, float]) -> dict[tuple, float]:
    scores = np.array(list(paths.values()))
    weights = np.exp(scores - scores.max())
    return dict(zip(paths, weights / weights.sum(), strict=True))


SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_viterbi_finds_the_best_sequence(seed):
    emissions, lengths, crf = random_case(seed)
    decoded = viterbi_decode(emissions, lengths, crf)
    for row, length in enumerate(lengths):
        paths = all_paths(emissions[row], length, crf)
        assert tuple(decoded[row].tolist()) == max(paths, key=paths.get)


@pytest.mark.parametrize("seed", SEEDS)
def test_log_partition_and_marginals_match_brute_force(seed):
    emissions, lengths, crf = random_case(seed)
    posterior = forward_backward(emissions, lengths, crf)
    marginals = posterior.marginals()
    for row, length in enumerate(lengths):
        paths = all_paths(emissions[row], length, crf)
        scores = np.array(list(paths.values()))
        log_z = scores.max() + np.log(np.exp(scores - scores.max()).sum())
        assert posterior.log_z[row] == pytest.approx(log_z, abs=1e-9)
        expected = np.zeros((length, crf.num_tags))
        for tags, p in probabilities(paths).items():
            expected[np.arange(length), tags] += p
        np.testing.assert_allclose(marginals[row, :length], expected, atol=1e-9)
        np.testing.assert_allclose(marginals[row, :length].sum(axis=1), 1.0, atol=1e-9)
        assert not marginals[row, length:].any()


@pytest.mark.parametrize("seed", SEEDS)
def test_span_probability_matches_brute_force(seed):
    emissions, lengths, crf = random_case(seed)
    posterior = forward_backward(emissions, lengths, crf)
    rng = np.random.default_rng(seed + 1000)
    for row, length in enumerate(lengths):
        probs = probabilities(all_paths(emissions[row], length, crf))
        start = int(rng.integers(0, length))
        end = int(rng.integers(start + 1, length + 1))
        tags = rng.integers(0, crf.num_tags, size=end - start).tolist()
        expected = sum(p for path, p in probs.items() if list(path[start:end]) == tags)
        probability = posterior.span_probability(row, start, end, tags)
        assert probability == pytest.approx(expected, abs=1e-9)


def test_a_sentence_decodes_the_same_alone_and_in_a_padded_batch():
    emissions, lengths, crf = random_case(7, max_len=6)
    batched = viterbi_decode(emissions, lengths, crf)
    batched_marginals = forward_backward(emissions, lengths, crf).marginals()
    for row, length in enumerate(lengths):
        alone = emissions[row : row + 1, :length]
        assert viterbi_decode(alone, [length], crf)[0].tolist() == batched[row].tolist()
        np.testing.assert_allclose(
            forward_backward(alone, [length], crf).marginals()[0],
            batched_marginals[row, :length],
            atol=1e-12,
        )


def test_forbidden_transitions_are_never_taken_and_give_no_nan():
    crf = CrfParameters(
        tags=("O", "B-X", "I-X"),
        transitions=np.array([[0.0, 0.0, -1e4], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
        start=np.array([0.0, 0.0, -1e4]),
        end=np.zeros(3),
    )
    # Unconstrained, the best tags would be I-X, O, I-X.
    emissions = np.array([[[1.0, 0.0, 5.0], [5.0, 0.0, 0.0], [1.0, 0.0, 5.0]]])
    (path,) = viterbi_decode(emissions, [3], crf)
    assert path.tolist() == [0, 0, 0]
    marginals = forward_backward(emissions, [3], crf).marginals()
    assert np.isfinite(marginals).all()
    assert marginals[0, 0, 2] == 0.0


def test_parameters_round_trip_through_json_and_refuse_bad_shapes(tmp_path):
    _, _, crf = random_case(3)
    crf.to_json(tmp_path / "crf.json")
    loaded = CrfParameters.from_json(tmp_path / "crf.json")
    assert loaded.tags == crf.tags
    np.testing.assert_array_equal(loaded.transitions, crf.transitions)
    with pytest.raises(ValueError, match="shapes"):
        CrfParameters(("a", "b"), np.zeros((2, 3)), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        CrfParameters(("a",), np.array([[-np.inf]]), np.zeros(1), np.zeros(1))


@pytest.mark.parametrize("lengths", [[0], [6], [1, 2, 3]])
def test_bad_lengths_are_refused(lengths):
    _, _, crf = random_case(0)
    with pytest.raises(ValueError):
        viterbi_decode(np.zeros((1, 5, crf.num_tags)), lengths, crf)
