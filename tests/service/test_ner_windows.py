"""NerPredictor on sentences longer than max_tokens: overlapping windows whose core tags are
stitched into one tag sequence per sentence, so that an entity can cross a cut between cores.

Runs on the stub session of ``test_ner_predictor.py`` (tags from a word table, the same whatever
the context), with a CRF whose transitions are not all zero where a score has to come from one
particular window.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from service.predictors.ner import NerPredictor, scoring_window
from service.predictors.viterbi import CrfParameters
from service.text.constants import CRF_FILE, VOCAB_FILE
from service.text.segment import Window
from service.text.vocab import Vocab
from tests.service.test_ner_predictor import TAGS, StubSession, stub_predictor, write_stub_artifact


def chained_predictor(folder: Path, max_tokens: int) -> tuple[NerPredictor, StubSession]:
    """A stub predictor whose CRF favours B-PER -> I-PER and disfavours O -> I-PER, so that
    probabilities of neighbouring tags are not independent."""
    manifest = write_stub_artifact(folder, max_tokens=max_tokens)
    transitions = np.zeros((len(TAGS), len(TAGS)))
    transitions[TAGS.index("B-PER"), TAGS.index("I-PER")] = 1.5
    transitions[TAGS.index("O"), TAGS.index("I-PER")] = -1.0
    zeros = np.zeros(len(TAGS))
    CrfParameters(tuple(TAGS), transitions, zeros, zeros).to_json(folder / CRF_FILE)
    session = StubSession(Vocab.from_json(folder / VOCAB_FILE))
    return NerPredictor(manifest, folder, session), session


def test_an_entity_across_a_window_cut_is_one_entity_scored_in_one_window(tmp_path):
    ner, session = chained_predictor(tmp_path, max_tokens=8)
    # 12 tokens, max_tokens 8 (context 2): windows [0, 8) and [4, 12), cores cut at token 6,
    # between Peter (5) and Blackburn (6).
    words = ["visited"] * 5 + ["Peter", "Blackburn"] + ["visited"] * 5
    (prediction,) = ner.predict_tokens([words])
    (first_window,) = ner.predict_tokens([words[0:8]])
    (second_window,) = ner.predict_tokens([words[4:12]])

    assert [(e.type, e.text, e.start, e.end) for e in prediction.entities] == [
        ("PER", "Peter Blackburn", 40, 55)
    ]
    # Both windows hold the entity and both cores hold one of its tokens: the first is used.
    assert prediction.entities[0].score == first_window.entities[0].score
    assert first_window.entities[0].score != second_window.entities[0].score  # context differs
    # Each token's score is from the window whose core holds it.
    assert prediction.tokens[5].score == first_window.tokens[5].score
    assert prediction.tokens[6].score == second_window.tokens[2].score
    assert prediction.entities[0].score <= min(t.score for t in prediction.tokens[5:7])
    assert session.calls[0][:2] == (2, 8)  # two windows of 8 tokens, batched together


def test_an_entity_no_window_holds_gets_the_product_of_its_parts(tmp_path):
    ner, session = stub_predictor(tmp_path, max_tokens=4)
    # Windows [0,4) [2,6) [4,8) [6,10) with cores cut at 3, 5 and 7: the entity on tokens
    # [2, 8) lies in all four cores and in no one window.
    words = ["visited", "visited", "Peter", *["Blackburn"] * 5, "visited", "visited"]
    (prediction,) = ner.predict_tokens([words])

    (entity,) = prediction.entities
    assert (entity.type, entity.text) == ("PER", " ".join(words[2:8]))
    # The stub CRF has no transition scores, so the tags of different tokens are independent and
    # the probability of each part is the product of its tokens' marginals.
    inside = [t.score for t in prediction.tokens[2:8]]
    assert entity.score == pytest.approx(math.prod(inside), rel=1e-12)
    assert all(shape[1] <= 4 for shape in session.calls)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (0, 2, 0),  # in the first window only
        (2, 4, 0),  # in the first two windows, one token in each core: the first
        (2, 5, 1),  # in the second window only ([2, 6))
        (3, 5, 1),  # in the second and third; all in the second's core
        (4, 6, 1),  # in the second and third, one token in each core: the first
        (1, 6, None),  # in no window
    ],
)
def test_the_window_an_entity_is_scored_in(first, last, expected):
    windows = [Window(0, 4, 0, 3), Window(2, 6, 3, 5), Window(4, 8, 5, 7), Window(6, 10, 7, 10)]
    assert scoring_window(windows, first, last) == expected


def test_long_sentences_tag_alike_alone_batched_and_pre_tokenized(tmp_path):
    ner, session = chained_predictor(tmp_path, max_tokens=6)
    long = " ".join(["Peter", "Blackburn", "visited", "New", "York"] * 7)  # no sentence end
    texts = ["Acme visited Paris.", long, "New York", long + " and Peter Blackburn"]

    together = ner.predict_texts(texts)
    alone = [ner.predict_texts([text])[0] for text in texts]
    from_tokens = ner.predict_tokens([text.split() for text in texts])

    assert together == alone
    assert together[1:3] == from_tokens[1:3]  # no "." to split sentences at
    assert [e.text for e in together[1].entities] == ["Peter Blackburn", "New York"] * 7
    assert all(shape[1] <= 6 for shape in session.calls)
