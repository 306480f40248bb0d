"""A tiny sentiment artifact with the real contract, built with the ``onnx`` helper API.

It has the real contract (``token_ids``/``lengths`` -> ``probabilities``, the same manifest and
files) but a hand-written graph: the sum of 2-d word embeddings over the first ``lengths``
tokens, then a softmax. "good"/"great" push towards positive, "bad"/"awful" towards negative,
so tests can predict its answers. ``onnx`` is a test-only dependency: the service never imports
onnx or torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.runtime.manifest import GraphSpec, Manifest, TensorSpec, write_manifest
from service.text.constants import LABELS_FILE, MODEL_GRAPH_FILE, VOCAB_FILE
from service.text.vocab import Vocab

TINY_LABELS = ["negative", "positive"]
TINY_MAX_TOKENS = 8
# word -> (negative logit, positive logit)
TINY_WORDS = {
    "good": (0.0, 2.0),
    "great": (0.0, 3.0),
    "bad": (2.0, 0.0),
    "awful": (3.0, 0.0),
    "movie": (0.2, 0.0),
    "the": (0.0, 0.1),
}


def _tiny_graph(embeddings: np.ndarray) -> onnx.ModelProto:
    """``probabilities = softmax(sum of embeddings[token_ids[:, :lengths]])``."""
    constants = [
        numpy_helper.from_array(embeddings.astype(np.float32), "embeddings"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Gather", ["embeddings", "token_ids"], ["vectors"]),
        helper.make_node("Shape", ["token_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["steps"], axis=0),
        helper.make_node("Range", ["zero", "steps", "one"], ["positions"]),
        helper.make_node("Unsqueeze", ["positions", "axis0"], ["position_row"]),
        helper.make_node("Unsqueeze", ["lengths", "axis1"], ["length_column"]),
        helper.make_node("Less", ["position_row", "length_column"], ["valid"]),
        helper.make_node("Cast", ["valid"], ["valid_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["valid_float", "axis2"], ["mask"]),
        helper.make_node("Mul", ["vectors", "mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["logits"], keepdims=0),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_sentiment",
        inputs=[
            helper.make_tensor_value_info("token_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        outputs=[helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _tiny_manifest(inputs: list[TensorSpec]) -> Manifest:
    return Manifest(
        task="sentiment",
        name="sentiment",
        version="0.0.1-test",
        created_at="2026-01-01T00:00:00+00:00",
        opset=17,
        graphs={
            "model": GraphSpec(
                file=MODEL_GRAPH_FILE,
                inputs=inputs,
                outputs=[TensorSpec(name="probabilities", dtype="float32", shape=["batch", 2])],
            )
        },
        labels=TINY_LABELS,
        preprocessing={"lowercase": True, "strip_markup": True, "max_tokens": TINY_MAX_TOKENS},
        training_data=[],
        metrics={"dev_accuracy": 0.5},
        training_config={},
        files={},
    )


TINY_INPUTS = [
    TensorSpec(name="token_ids", dtype="int64", shape=["batch", "tokens"]),
    TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
]


def build_tiny_artifact(folder: Path, *, inputs: list[TensorSpec] | None = None) -> Path:
    """Write a complete sentiment artifact into ``folder``; ``inputs`` overrides the manifest's."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = Vocab(["<pad>", "<unk>", *TINY_WORDS])
    embeddings = np.zeros((len(vocab), 2), np.float32)
    for word, vector in TINY_WORDS.items():
        embeddings[vocab.lookup(word)] = vector
    onnx.save(_tiny_graph(embeddings), folder / MODEL_GRAPH_FILE)
    vocab.to_json(folder / VOCAB_FILE)
    (folder / LABELS_FILE).write_text(json.dumps(TINY_LABELS), "utf-8")
    write_manifest(folder, _tiny_manifest(inputs or TINY_INPUTS))
    return folder
