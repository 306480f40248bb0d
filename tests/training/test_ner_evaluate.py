"""``python -m training evaluate ner``: seqeval's strict IOB2 scores of an exported model.

The artifact here is hand-built (``onnx.helper``) with the real contract: its emissions are a
table lookup of the word ids and its CRF scores are zero, so every word gets a known tag and the
expected precision/recall/F1 can be counted by hand.
"""

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.predictors.viterbi import CrfParameters
from service.runtime.manifest import GraphSpec, Manifest, TensorSpec, write_manifest
from service.text.constants import CHARS_FILE, CRF_FILE, LABELS_FILE, MODEL_GRAPH_FILE, VOCAB_FILE
from service.text.features import EMISSIONS, NER_INPUT_NAMES, NerPreprocessing
from service.text.vocab import Vocab
from training.cli import main
from training.data import NER_TAGS

# word (lower-cased) -> the tag the model gives it; any other word gets O.
PREDICTED = {"john": "B-PER", "mary": "B-PER", "paris": "B-LOC", "acme": "B-ORG"}
PREDICTED |= {"berlin": "B-LOC", "wall": "I-MISC"}
GOLD = """-DOCSTART- -X- -X- O

John NNP B-NP B-PER
lives VBZ B-VP O
in IN B-PP O
Paris NNP B-NP B-LOC

Acme NNP B-NP B-ORG
Corp NNP I-NP I-ORG
hired VBD B-VP O
Mary NNP B-NP B-PER

Berlin NNP B-NP B-MISC
Wall NNP I-NP I-MISC
"""
# Gold: PER 2, LOC 1, ORG 1, MISC 1. Predicted: John, Mary (right), Paris (right), Acme (wrong
# span), Berlin as LOC (wrong), and I-MISC on "Wall" after B-LOC, which strict IOB2 drops.
# So 5 predicted, 3 right: precision = recall = F1 = 0.6 (the lenient mode would count 6).
EXPECTED = {
    "PER": (1.0, 1.0, 1.0, 2),
    "LOC": (0.5, 1.0, 2 / 3, 1),
    "ORG": (0.0, 0.0, 0.0, 1),
    "MISC": (0.0, 0.0, 0.0, 1),
    "micro avg": (0.6, 0.6, 0.6, 5),
}


def build_lookup_artifact(folder: Path) -> Path:
    words = Vocab(["<pad>", "<unk>", *PREDICTED, "lives", "in", "corp", "hired"])
    table = np.zeros((len(words), len(NER_TAGS)), dtype=np.float32)
    table[:, NER_TAGS.index("O")] = 1.0
    for word, tag in PREDICTED.items():
        table[words.lookup(word)] = np.eye(len(NER_TAGS))[NER_TAGS.index(tag)]
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "word_ids"], [EMISSIONS], axis=0)],
        "lookup_ner",
        [
            helper.make_tensor_value_info("word_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("case_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("char_ids", TensorProto.INT64, ["batch", "tokens", "c"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info(EMISSIONS, TensorProto.FLOAT, ["batch", "tokens", 9])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True)
    onnx.save(model, folder / MODEL_GRAPH_FILE)
    words.to_json(folder / VOCAB_FILE)
    Vocab(["<pad>", "<unk>"]).to_json(folder / CHARS_FILE)
    (folder / LABELS_FILE).write_text(json.dumps(NER_TAGS), "utf-8")
    zeros = np.zeros(len(NER_TAGS))
    CrfParameters(tuple(NER_TAGS), np.zeros((9, 9)), zeros, zeros).to_json(folder / CRF_FILE)
    shapes = {"word_ids": ["batch", "tokens"], "case_ids": ["batch", "tokens"]}
    shapes |= {"char_ids": ["batch", "tokens", "chars"], "lengths": ["batch"]}
    manifest = Manifest(
        task="ner",
        name="ner",
        version="0.0.1",
        created_at="2026-01-01T00:00:00+00:00",
        opset=17,
        graphs={
            "model": GraphSpec(
                file=MODEL_GRAPH_FILE,
                inputs=[
                    TensorSpec(name=n, dtype="int64", shape=shapes[n]) for n in NER_INPUT_NAMES
                ],
                outputs=[TensorSpec(name=EMISSIONS, dtype="float32", shape=["batch", "tokens", 9])],
            )
        },
        labels=NER_TAGS,
        preprocessing=NerPreprocessing().model_dump(),
        training_data=[],
        metrics={},
        training_config={},
        files={},
    )
    write_manifest(folder, manifest)
    return folder


def test_evaluate_prints_strict_iob2_scores_per_type_and_overall(tmp_path, capsys):
    model = build_lookup_artifact(tmp_path / "ner")
    data = tmp_path / "gold.txt"
    data.write_text(GOLD, "utf-8")
    assert main(["evaluate", "ner", "--data", str(data), "--model", str(model)]) == 0
    out = capsys.readouterr().out
    for kind, expected in EXPECTED.items():
        row = re.search(rf"^\s*{kind}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", out, re.MULTILINE)
        assert row, f"no {kind} row in:\n{out}"
        *scores, support = row.groups()
        assert [float(s) for s in scores] == pytest.approx(expected[:3], abs=1e-4), kind
        assert int(support) == expected[3]
    assert "overall: precision 60.00 recall 60.00 F1 60.00" in out


def test_evaluate_as_text_scores_the_entities_the_api_returns_by_character_span(tmp_path, capsys):
    # As text, the tags become entities as POST /v1/ner returns them: "Wall" (I-MISC after
    # B-LOC) is an entity of its own there, where strict IOB2 drops it. 6 predicted, 3 right
    # (John, Paris, Mary) of 5 gold: precision 50, recall 60.
    model = build_lookup_artifact(tmp_path / "ner")
    data = tmp_path / "gold.txt"
    data.write_text(GOLD, "utf-8")
    command = ["evaluate", "ner", "--data", str(data), "--model", str(model), "--as-text"]
    assert main(command) == 0
    out = capsys.readouterr().out
    expected = {
        "PER": (100, 100, 100, 2),
        "LOC": (50, 100, 200 / 3, 1),
        "ORG": (0, 0, 0, 1),
        "MISC": (0, 0, 0, 1),
        "all": (50, 60, 600 / 11, 5),
    }
    for kind, (*scores, support) in expected.items():
        row = re.search(rf"^\s*{kind}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", out, re.M)
        assert row, f"no {kind} row in:\n{out}"
        assert [float(v) for v in row.groups()[:3]] == pytest.approx(scores, abs=0.01), kind
        assert int(row[4]) == support
    assert "overall: precision 50.00 recall 60.00 F1 54.55" in out


@pytest.mark.parametrize(
    "task_args",
    [["sentiment", "--data", "x.tsv"], ["translation", "--src", "x.en", "--ref", "x.de"]],
)
def test_evaluate_as_text_is_for_ner_only(task_args, capsys):
    assert main(["evaluate", *task_args, "--as-text"]) == 2
    assert "error: --as-text is for ner" in capsys.readouterr().err


def test_evaluate_refuses_a_tampered_artifact(tmp_path, capsys):
    model = build_lookup_artifact(tmp_path / "ner")
    (model / VOCAB_FILE).write_text('{"tokens": ["<pad>", "<unk>", "john"]}', "utf-8")
    data = tmp_path / "gold.txt"
    data.write_text(GOLD, "utf-8")
    assert main(["evaluate", "ner", "--data", str(data), "--model", str(model)]) == 2
    assert re.search(r"^error: .*vocab.json.*sha256", capsys.readouterr().err, re.M)


def test_evaluate_refuses_iob1_gold_tags_instead_of_misscoring_them(tmp_path, capsys):
    # The same gold in IOB1 (entities start with I-; the original CoNLL-2003 release): strict
    # IOB2 would drop its entities and report made-up scores.
    model = build_lookup_artifact(tmp_path / "ner")
    data = tmp_path / "gold.iob1"
    data.write_text(re.sub(r" B-(PER|LOC|ORG|MISC)$", r" I-\1", GOLD, flags=re.M), "utf-8")
    assert main(["evaluate", "ner", "--data", str(data), "--model", str(model)]) == 2
    assert re.search(r"^error: .*gold.iob1:3: .*looks like IOB1", capsys.readouterr().err, re.M)


def test_evaluate_warns_of_gold_types_the_model_does_not_know(tmp_path, capsys):
    model = build_lookup_artifact(tmp_path / "ner")
    data = tmp_path / "gold.txt"
    data.write_text(GOLD.replace("B-MISC", "B-EVENT").replace("I-MISC", "I-EVENT"), "utf-8")
    assert main(["evaluate", "ner", "--data", str(data), "--model", str(model)]) == 0
    printed = capsys.readouterr()
    assert re.search(r"^\s*EVENT\s+0.0000\s+0.0000\s+0.0000\s+1$", printed.out, re.M)
    warning = r"WARNING .*has tags \['B-EVENT', 'I-EVENT'\] that .* never predicts"
    assert re.search(warning, printed.err)


@pytest.mark.parametrize("as_text", [False, True])
def test_evaluate_refuses_a_file_without_entities(tmp_path, capsys, as_text: bool):
    # seqeval's report failed on max() of nothing.
    model = build_lookup_artifact(tmp_path / "ner")
    data = tmp_path / "plain.txt"
    data.write_text("EU O\nrejects O\n", "utf-8")
    command = ["evaluate", "ner", "--data", str(data), "--model", str(model)]
    assert main([*command, *(["--as-text"] if as_text else [])]) == 2
    assert (
        f"error: {data}: no entities (every tag is O): nothing to score" in capsys.readouterr().err
    )
