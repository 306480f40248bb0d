"""NerPredictor over a stub session whose emissions follow a word table, so that the tags are
known: offsets, sentence splitting and windowing, batching, the IOB2 entity rule, scores.

The stub CRF has zero transition scores and no constraints, so the tags are the per-token argmax
of the emissions (an ``I-`` tag may follow ``O``, which exercises the entity rule).
"""

import functools
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.predictors.ner import NerPredictor, iob2_entities
from service.predictors.viterbi import CrfParameters
from service.runtime.manifest import ArtifactError, GraphSpec, Manifest, TensorSpec, file_hashes
from service.text.constants import CHARS_FILE, CRF_FILE, LABELS_FILE, VOCAB_FILE
from service.text.features import CASE_FEATURES, EMISSIONS, NER_INPUT_NAMES, NerPreprocessing
from service.text.tokenize import tokenize
from service.text.vocab import Vocab

TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
# lower-cased word -> tag it gets; other words get "O", except that with ``cased=True`` an
# unknown initial-capital word gets B-PER and an unknown all-capital word I-PER.
WORD_TAGS = {
    "peter": "B-PER",
    "blackburn": "I-PER",
    "paris": "B-LOC",
    "new": "B-LOC",
    "york": "I-LOC",
    "acme": "B-ORG",
    "german": "B-MISC",
}


class StubSession:
    """Emissions from the word table; records the shapes of every call."""

    def __init__(self, words: Vocab, cased: bool = False):
        self.table = np.zeros((len(words), len(TAGS)), dtype=np.float32)
        self.table[:, 0] = 1.0
        for word, tag in WORD_TAGS.items():
            self.table[words.lookup(word)] = 0.0
            self.table[words.lookup(word), TAGS.index(tag)] = 1.0
        self.cased = cased
        self.calls: list[tuple[int, ...]] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert set(feeds) == set(NER_INPUT_NAMES)
        self.calls.append(feeds["char_ids"].shape)
        emissions = self.table[feeds["word_ids"]].copy()
        if self.cased:
            unknown = feeds["word_ids"] == 1
            initial = unknown & (feeds["case_ids"] == CASE_FEATURES.index("initial_upper"))
            upper = unknown & (feeds["case_ids"] == CASE_FEATURES.index("upper"))
            emissions[initial] = np.eye(len(TAGS))[TAGS.index("B-PER")]
            emissions[upper] = np.eye(len(TAGS))[TAGS.index("I-PER")]
        return {EMISSIONS: emissions * 4.0}


def write_stub_artifact(folder: Path, *, max_tokens: int = 150) -> Manifest:
    """Write the JSON files of a stub NER artifact and return its (unwritten) manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    words = Vocab(["<pad>", "<unk>", *WORD_TAGS, "visited", "in", "."])
    words.to_json(folder / VOCAB_FILE)
    Vocab(["<pad>", "<unk>", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ."]).to_json(
        folder / CHARS_FILE
    )
    (folder / LABELS_FILE).write_text(json.dumps(TAGS), "utf-8")
    zeros = np.zeros(len(TAGS))
    CrfParameters(tuple(TAGS), np.zeros((len(TAGS), len(TAGS))), zeros, zeros).to_json(
        folder / CRF_FILE
    )
    spec = GraphSpec(
        file="model.onnx",
        inputs=[TensorSpec(name=n, dtype="int64", shape=["batch"]) for n in NER_INPUT_NAMES],
        outputs=[TensorSpec(name=EMISSIONS, dtype="float32", shape=["batch", "tokens", 9])],
    )
    return Manifest(
        task="ner",
        name="ner",
        version="0.0.1",
        created_at="2026-01-01T00:00:00+00:00",
        opset=17,
        graphs={"model": spec},
        labels=TAGS,
        preprocessing=NerPreprocessing(max_tokens=max_tokens).model_dump(),
        training_data=[],
        metrics={},
        training_config={},
        files=file_hashes(folder),
    )


def stub_predictor(
    folder: Path, *, max_tokens: int = 150, max_batch_size: int = 64, cased: bool = False
) -> tuple[NerPredictor, StubSession]:
    manifest = write_stub_artifact(folder, max_tokens=max_tokens)
    session = StubSession(Vocab.from_json(folder / VOCAB_FILE), cased=cased)
    return NerPredictor(manifest, folder, session, max_batch_size=max_batch_size), session


@pytest.fixture
def predictor(tmp_path):
    return stub_predictor(tmp_path / "ner")


def test_tags_entities_and_offsets_of_a_text(predictor):
    ner, _ = predictor
    text = "Peter  Blackburn visited New York."
    (prediction,) = ner.predict_texts([text])
    assert [(t.text, t.tag) for t in prediction.tokens] == [
        ("Peter", "B-PER"),
        ("Blackburn", "I-PER"),
        ("visited", "O"),
        ("New", "B-LOC"),
        ("York", "I-LOC"),
        (".", "O"),
    ]
    assert [(e.type, e.text, e.start, e.end) for e in prediction.entities] == [
        ("PER", "Peter  Blackburn", 0, 16),
        ("LOC", "New York", 25, 33),
    ]
    for entity in prediction.entities:
        inside = [t.score for t in prediction.tokens if entity.start <= t.start < entity.end]
        assert 0.0 < entity.score <= min(inside)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-PER", "I-PER", "O"], [("PER", 0, 2)]),
        (["O", "I-LOC", "I-LOC"], [("LOC", 1, 3)]),  # I- after O starts an entity
        (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),  # type change starts one
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["I-ORG"], [("ORG", 0, 1)]),
        (["O", "O"], []),
        ([], []),
    ],
)
def test_iob2_entity_rule(tags, expected):
    assert iob2_entities(tags) == expected


def test_an_i_tag_without_a_b_tag_starts_an_entity(predictor):
    ner, _ = predictor
    (prediction,) = ner.predict_texts(["visited York"])
    assert [(e.type, e.text) for e in prediction.entities] == [("LOC", "York")]


def test_tokens_input_offsets_point_into_the_space_joined_string(predictor):
    ner, _ = predictor
    first, empty = ner.predict_tokens([["German", "Peter", "Blackburn"], []])
    assert [(t.text, t.start, t.end) for t in first.tokens] == [
        ("German", 0, 6),
        ("Peter", 7, 12),
        ("Blackburn", 13, 22),
    ]
    assert [(e.type, e.text, e.start, e.end) for e in first.entities] == [
        ("MISC", "German", 0, 6),
        ("PER", "Peter Blackburn", 7, 22),
    ]
    assert empty.tokens == [] and empty.entities == []
    with pytest.raises(ValueError):
        ner.predict_tokens([["ok", ""]])


def test_token_input_is_one_sentence_and_text_input_is_split(tmp_path):
    ner, session = stub_predictor(tmp_path, max_tokens=50)
    ner.predict_tokens([["Paris", ".", "Peter", "visited", "."]])
    assert session.calls[-1][:2] == (1, 5)
    ner.predict_texts(["Paris. Peter visited."])
    assert session.calls[-1][:2] == (2, 3)  # two sentences, in one padded batch


def test_long_inputs_are_windowed_never_cut(tmp_path):
    ner, session = stub_predictor(tmp_path, max_tokens=4, max_batch_size=2)
    words = ["Paris"] * 10
    (from_tokens,) = ner.predict_tokens([words])
    (from_text,) = ner.predict_texts([" ".join(words)])
    for prediction in (from_tokens, from_text):
        assert len(prediction.tokens) == 10
        assert [e.start for e in prediction.entities] == [6 * i for i in range(10)]
    assert all(shape[1] <= 4 and shape[0] <= 2 for shape in session.calls)


def test_a_request_runs_as_padded_batches_and_answers_in_order(tmp_path):
    ner, session = stub_predictor(tmp_path, max_batch_size=3)
    texts = ["Peter visited Paris.", "", "New York", "Acme", "German Peter Blackburn visited Paris"]
    together = ner.predict_texts(texts)
    # 4 non-empty texts of 4, 2, 1 and 5 words, in batches of at most 3 rows cut where fewer
    # than 0.8 of the padded words would be real: 5 + 4 words together, 2 and 1 apart.
    assert [(rows, words) for rows, words, _ in session.calls] == [(1, 1), (1, 2), (2, 5)]
    alone = [ner.predict_texts([text])[0] for text in texts]
    assert together == alone
    assert together[1].tokens == [] and together[1].entities == []


def test_predict_batch_is_predict_texts(predictor):
    ner, _ = predictor
    assert ner.predict_batch(["Peter"]) == ner.predict_texts(["Peter"])


def test_an_artifact_with_other_case_classes_or_tags_is_refused(tmp_path):
    manifest = write_stub_artifact(tmp_path)
    session = StubSession(Vocab.from_json(tmp_path / VOCAB_FILE))
    bad = manifest.model_copy(update={"preprocessing": {"case_features": ["<pad>", "lower"]}})
    with pytest.raises(ArtifactError, match="preprocessing"):
        NerPredictor(bad, tmp_path, session)
    other_tags = manifest.model_copy(update={"labels": [*TAGS[:-1], "I-EVENT"]})
    with pytest.raises(ArtifactError, match="differ"):
        NerPredictor(other_tags, tmp_path, session)


class RuntimeSession(StubSession):
    """The stub with the names a ``service.runtime.session.OnnxSession`` has."""

    def __init__(self, words: Vocab):
        super().__init__(words)
        self.input_names = list(NER_INPUT_NAMES)
        self.output_names = [EMISSIONS]


def test_from_artifact_takes_the_runtime_session(tmp_path):
    manifest = write_stub_artifact(tmp_path)

    ner = NerPredictor.from_artifact(
        tmp_path, manifest, {"model": RuntimeSession(Vocab.from_json(tmp_path / VOCAB_FILE))}
    )

    ner.warm_up()
    assert [e.text for e in ner.predict_texts(["Peter visited Paris"])[0].entities] == [
        "Peter",
        "Paris",
    ]


def test_from_artifact_refuses_a_graph_with_other_names(tmp_path):
    manifest = write_stub_artifact(tmp_path)
    session = RuntimeSession(Vocab.from_json(tmp_path / VOCAB_FILE))
    session.output_names = ["logits"]

    with pytest.raises(ArtifactError, match=r"returns 'emissions'; this one .* returns"):
        NerPredictor.from_artifact(tmp_path, manifest, {"model": session})


# The property: whatever the texts, sentence splitting and windowing give every token of the
# tokenizer exactly once, in order, with offsets into its text; entities are exact substrings
# that start and end on token boundaries; no piece the graph sees is longer than max_tokens.
_PIECES = st.sampled_from(
    [
        "Peter",
        "Blackburn",
        "visited",
        "New",
        "York",
        ".",
        "!",
        "?",
        " ",
        "  ",
        "\n",
        "U.S.",
        "Mr.",
        "J.",
        "ACME",
        "é",
        "-",
        "3.5",
        "Ünïcödé",
    ]
)
_TEXTS = st.one_of(st.text(max_size=120), st.lists(_PIECES, max_size=60).map("".join))


@pytest.fixture(scope="module")
def cached_stub(tmp_path_factory):
    """``cached_stub(max_tokens)``: one stub predictor per ``max_tokens`` for all the examples,
    in a pytest temporary folder (a module-scoped fixture: hypothesis runs the test many times
    per fixture call)."""
    folder = tmp_path_factory.mktemp("ner-stub")

    @functools.cache
    def build(max_tokens: int) -> tuple[NerPredictor, StubSession]:
        return stub_predictor(
            folder / str(max_tokens), max_tokens=max_tokens, max_batch_size=3, cased=True
        )

    return build


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(_TEXTS, min_size=1, max_size=4), max_tokens=st.integers(1, 6))
def test_offsets_round_trip_through_sentence_splitting_and_windowing(
    cached_stub, texts, max_tokens
):
    ner, session = cached_stub(max_tokens)
    session.calls.clear()
    predictions = ner.predict_texts(texts)
    assert len(predictions) == len(texts)
    for text, prediction in zip(texts, predictions, strict=True):
        expected = tokenize(text)
        assert [(t.text, t.start, t.end) for t in prediction.tokens] == [
            (t.text, t.start, t.end) for t in expected
        ]
        for token in prediction.tokens:
            assert text[token.start : token.end] == token.text
            assert 0.0 < token.score <= 1.0
        starts, ends = {t.start for t in expected}, {t.end for t in expected}
        for entity in prediction.entities:
            assert text[entity.start : entity.end] == entity.text
            assert entity.start in starts and entity.end in ends
            inside = [t.score for t in prediction.tokens if entity.start <= t.start < entity.end]
            assert 0.0 < entity.score <= min(inside)
    assert all(shape[1] <= max_tokens and shape[0] <= 3 for shape in session.calls)


def test_a_graph_answering_another_number_of_tags_fails_at_warm_up(tmp_path):
    manifest = write_stub_artifact(tmp_path)

    class FewerTags(StubSession):  # e.g. a graph exported without the MISC tags
        def run(self, feeds):
            return {EMISSIONS: super().run(feeds)[EMISSIONS][..., :-2]}

    ner = NerPredictor(manifest, tmp_path, FewerTags(Vocab.from_json(tmp_path / VOCAB_FILE)))
    with pytest.raises(ArtifactError, match=r"emissions of shape .*, expected"):
        ner.warm_up()
