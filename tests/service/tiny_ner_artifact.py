"""A tiny NER artifact with the real contract, built with the ``onnx`` helper API.

Same files and tensors as ``training.tasks.ner`` exports (``word_ids``, ``case_ids``,
``char_ids``, ``lengths`` -> ``emissions``; ``vocab.json``, ``chars.json``, ``labels.json``,
``crf.json``, ``manifest.json``), but a hand-written graph whose tags tests can predict:

* a word of :data:`TINY_NER_WORDS` (looked up lower-cased) gets its tag's emission;
* an unknown ALL-CAPS word (casing class ``upper``: ``NATO``) leans to ``B-ORG``;
* anything else is ``O``.

``emissions = (word_table[word_ids] + case_table[case_ids]) * token_mask``, the mask being 1 for
tokens that are within ``lengths`` and have a real character. The CRF has zero scores except
the IOB2 constraints (no ``I-X`` after anything but ``B-X``/``I-X``, none at the start), as in
the exported models. ``onnx`` is a test-only dependency: the service never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.predictors.viterbi import CrfParameters
from service.runtime.manifest import GraphSpec, Manifest, TensorSpec, write_manifest
from service.text.constants import (
    CHARS_FILE,
    CRF_FILE,
    LABELS_FILE,
    MODEL_GRAPH_FILE,
    VOCAB_FILE,
)
from service.text.features import CASE_FEATURES, NerPreprocessing
from service.text.vocab import Vocab

TINY_NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
TINY_NER_MAX_TOKENS = 40
TINY_NER_VERSION = "0.0.1-test"
# lower-cased word -> its tag
TINY_NER_WORDS = {
    "eu": "B-ORG",
    "acme": "B-ORG",
    "corp": "I-ORG",
    "german": "B-MISC",
    "british": "B-MISC",
    "peter": "B-PER",
    "blackburn": "I-PER",
    "zoë": "B-PER",
    "ångström": "I-PER",
    "brussels": "B-LOC",
    "new": "B-LOC",
    "york": "I-LOC",
    "zürich": "B-LOC",
    "zu\u0308rich": "B-LOC",  # the same name with a decomposed ü (u + combining diaeresis)
    "são": "B-LOC",
    "paulo": "I-LOC",
    "東京": "B-LOC",
    # known words that stay outside entities, even when written in capitals
    "rejects": "O",
    "call": "O",
    "to": "O",
    "boycott": "O",
    "lamb": "O",
    "said": "O",
    "in": "O",
    "the": "O",
    "visited": "O",
    ".": "O",
}
WORD_SCORE = 5.0  # emission of a known word's tag
UNKNOWN_O_SCORE = 1.0  # emission of O for an unknown word
UPPER_ORG_SCORE = 2.0  # emission of B-ORG for an ALL-CAPS word
FORBIDDEN = -1e4  # score of a transition the IOB2 scheme forbids (as in training.models.crf)


def _tables(words: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """``word_table (words, tags)`` and ``case_table (case classes, tags)``."""
    word_table = np.zeros((len(words), len(TINY_NER_TAGS)), np.float32)
    word_table[words.unk_id, TINY_NER_TAGS.index("O")] = UNKNOWN_O_SCORE
    for word, tag in TINY_NER_WORDS.items():
        word_table[words.lookup(word), TINY_NER_TAGS.index(tag)] = WORD_SCORE
    case_table = np.zeros((len(CASE_FEATURES), len(TINY_NER_TAGS)), np.float32)
    case_table[CASE_FEATURES.index("upper"), TINY_NER_TAGS.index("B-ORG")] = UPPER_ORG_SCORE
    return word_table, case_table


def _tiny_graph(word_table: np.ndarray, case_table: np.ndarray) -> onnx.ModelProto:
    """``emissions = (word_table[word_ids] + case_table[case_ids]) * token_mask``."""
    constants = [
        numpy_helper.from_array(word_table, "word_table"),
        numpy_helper.from_array(case_table, "case_table"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array(0, np.float32), "zero_float"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Gather", ["word_table", "word_ids"], ["word_scores"]),
        helper.make_node("Gather", ["case_table", "case_ids"], ["case_scores"]),
        helper.make_node("Add", ["word_scores", "case_scores"], ["scores"]),
        # A real token has at least one non-zero character id; padding has none.
        helper.make_node("Cast", ["char_ids"], ["chars_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["chars_float"], ["top_char"], axes=[2], keepdims=1),
        helper.make_node("Greater", ["top_char", "zero_float"], ["has_chars"]),
        helper.make_node("Cast", ["has_chars"], ["char_mask"], to=TensorProto.FLOAT),
        # Positions before each sequence's length.
        helper.make_node("Shape", ["word_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["steps"], axis=0),
        helper.make_node("Range", ["zero", "steps", "one"], ["positions"]),
        helper.make_node("Unsqueeze", ["positions", "axis0"], ["position_row"]),
        helper.make_node("Unsqueeze", ["lengths", "axis1"], ["length_column"]),
        helper.make_node("Less", ["position_row", "length_column"], ["valid"]),
        helper.make_node("Cast", ["valid"], ["valid_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["valid_float", "axis2"], ["length_mask"]),
        helper.make_node("Mul", ["char_mask", "length_mask"], ["mask"]),
        helper.make_node("Mul", ["scores", "mask"], ["emissions"]),
    ]
    tags = len(TINY_NER_TAGS)
    graph = helper.make_graph(
        nodes,
        "tiny_ner",
        inputs=[
            helper.make_tensor_value_info("word_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("case_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info(
                "char_ids", TensorProto.INT64, ["batch", "tokens", "chars"]
            ),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        outputs=[
            helper.make_tensor_value_info("emissions", TensorProto.FLOAT, ["batch", "tokens", tags])
        ],
        initializer=constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def iob2_crf() -> CrfParameters:
    """Zero scores, except that the IOB2 scheme's forbidden transitions and starts are barred."""
    count = len(TINY_NER_TAGS)
    transitions = np.zeros((count, count))
    start = np.zeros(count)
    for column, tag in enumerate(TINY_NER_TAGS):
        if tag.startswith("I-"):
            start[column] = FORBIDDEN
            for row, previous in enumerate(TINY_NER_TAGS):
                if previous[2:] != tag[2:]:
                    transitions[row, column] = FORBIDDEN
    return CrfParameters(tuple(TINY_NER_TAGS), transitions, start, np.zeros(count))


def _tiny_manifest() -> Manifest:
    shapes = {
        "word_ids": ["batch", "tokens"],
        "case_ids": ["batch", "tokens"],
        "char_ids": ["batch", "tokens", "chars"],
        "lengths": ["batch"],
    }
    return Manifest(
        task="ner",
        name="ner",
        version=TINY_NER_VERSION,
        created_at="2026-01-01T00:00:00+00:00",
        opset=17,
        graphs={
            "model": GraphSpec(
                file=MODEL_GRAPH_FILE,
                inputs=[TensorSpec(name=n, dtype="int64", shape=s) for n, s in shapes.items()],
                outputs=[
                    TensorSpec(
                        name="emissions",
                        dtype="float32",
                        shape=["batch", "tokens", len(TINY_NER_TAGS)],
                    )
                ],
            )
        },
        labels=TINY_NER_TAGS,
        preprocessing=NerPreprocessing(max_tokens=TINY_NER_MAX_TOKENS).model_dump(),
        training_data=[],
        metrics={"dev_f1": 50.0},
        training_config={},
        files={},
    )


def build_tiny_ner_artifact(folder: Path) -> Path:
    """Write a complete NER artifact into ``folder`` (created if needed) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    words = Vocab(["<pad>", "<unk>", *TINY_NER_WORDS])
    chars = Vocab(["<pad>", "<unk>", *sorted({c for word in TINY_NER_WORDS for c in word})])
    onnx.save(_tiny_graph(*_tables(words)), folder / MODEL_GRAPH_FILE)
    words.to_json(folder / VOCAB_FILE)
    chars.to_json(folder / CHARS_FILE)
    (folder / LABELS_FILE).write_text(json.dumps(TINY_NER_TAGS), "utf-8")
    iob2_crf().to_json(folder / CRF_FILE)
    write_manifest(folder, _tiny_manifest())
    return folder
