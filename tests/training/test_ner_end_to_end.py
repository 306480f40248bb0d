"""NER smoke test: tiny synthetic CoNLL data, train, export (with its whole-dev verification),
load through the service's code, evaluate from the command line."""

import gzip
import itertools
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import training.tasks.ner as ner
from service.predictors.ner import NerPredictor
from service.runtime.manifest import load_manifest
from service.runtime.session import OnnxSession, SessionConfig
from training.cli import main
from training.verify import VerificationError

PEOPLE = [["John", "Smith"], ["Mary"], ["Peter", "Blackburn"], ["Anna", "Berg"]]
PLACES = [["Paris"], ["New", "York"], ["Berlin"], ["Tokyo"]]
ORGS = [["Acme", "Corp"], ["Reuters"], ["United", "Nations"]]
MISC = [["German"], ["French"], ["Olympic"]]
TEMPLATES = [
    ["{PER}", "visited", "{LOC}", "."],
    ["{ORG}", "shares", "rose", "in", "{LOC}", "on", "Monday", "."],
    ["{PER}", "of", "{ORG}", "said", "the", "{MISC}", "team", "won", "."],
    ["the", "{MISC}", "minister", "met", "{PER}", "."],
]
FILLER = ["visited", "shares", "rose", "in", "on", "monday", "of", "said", "the", "team", "won"]


def _sentence(rng: random.Random) -> list[tuple[str, str]]:
    pools = {"{PER}": ("PER", PEOPLE), "{LOC}": ("LOC", PLACES), "{ORG}": ("ORG", ORGS)}
    pools["{MISC}"] = ("MISC", MISC)
    tokens = []
    for slot in rng.choice(TEMPLATES):
        if slot in pools:
            kind, names = pools[slot]
            name = rng.choice(names)
            tokens += [(w, f"{'B' if i == 0 else 'I'}-{kind}") for i, w in enumerate(name)]
        else:
            tokens.append((slot, "O"))
    return tokens


def write_tiny_conll(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    (root / "conll2003").mkdir(parents=True)
    (root / "glove").mkdir(parents=True)
    for split, count in [("train", 240), ("valid", 40)]:
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(count):
            lines += [f"{w} X X {t}" for w, t in _sentence(rng)] + [""]
        (root / f"conll2003/{split}.txt").write_text("\n".join(lines), "utf-8")
    words = sorted({w.lower() for names in PEOPLE + PLACES + ORGS + MISC for w in names})
    vectors = np.random.default_rng(seed).normal(size=(len(words + FILLER), 50))
    with gzip.open(root / "glove/glove.6B.50d.txt.gz", "wt", encoding="utf-8") as handle:
        for word, vector in zip(FILLER + words, vectors, strict=True):
            handle.write(word + " " + " ".join(f"{v:.5f}" for v in vector) + "\n")
    return root


@pytest.fixture(scope="module")
def tiny_conll(tmp_path_factory) -> Path:
    return write_tiny_conll(tmp_path_factory.mktemp("ner-datasets"))


def overrides(root: Path) -> list[str]:
    settings = [
        f"data.datasets_dir={root}",
        f"vocab.glove_path={root}/glove/glove.6B.50d.txt.gz",
        "vocab.max_size=200",
        "data.batch_size=8",
        "trainer.threads=1",
        "trainer.lr=0.01",
        "model.hidden_size=16",
        "model.char_dim=8",
        "model.char_filters=8",
        "model.case_dim=4",
    ]
    return [a for s in settings for a in ("--set", s)]


@pytest.fixture(scope="module")
def trained(tiny_conll, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ner-run")
    args = ["train", "ner", "--run-dir", str(run_dir), "--set", "trainer.epochs=3"]
    assert main(args + overrides(tiny_conll)) == 0
    return run_dir


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ner-model") / "ner"
    assert main(["export", "ner", "--checkpoint", str(trained / "best.pt"), "--out", str(out)]) == 0
    return out


def test_run_folder_records_entity_f1_per_epoch(trained):
    for name in ["config.json", "train.log", "metrics.jsonl", "learning_curve.png", "best.pt"]:
        assert (trained / name).is_file(), name
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert {"dev_f1", "dev_precision", "dev_recall", "dev_f1_PER", "dev_f1_LOC"} <= records[
        0
    ].keys()
    assert max(r["dev_f1"] for r in records) > 50  # the templates are easy


def test_export_writes_a_verified_artifact(exported):
    manifest = load_manifest(exported)
    assert manifest.task == "ner"
    assert set(manifest.files) == {
        "model.onnx",
        "vocab.json",
        "chars.json",
        "labels.json",
        "crf.json",
        "truecase.json",
        "MODEL_CARD.md",
    }
    assert manifest.preprocessing["truecaser"] == "truecase.json"
    assert manifest.labels == json.loads((exported / "labels.json").read_text())
    assert manifest.labels[0] == "O" and len(manifest.labels) == 9
    assert {"dev_f1", "dev_precision", "dev_recall", "dev_f1_PER"} <= manifest.metrics.keys()
    assert manifest.preprocessing["max_tokens"] == 150 and manifest.preprocessing["lowercase_words"]
    assert [t.name for t in manifest.graphs["model"].inputs] == [
        "word_ids",
        "case_ids",
        "char_ids",
        "lengths",
    ]


def test_the_service_tags_raw_text_with_the_artifact(exported):
    manifest = load_manifest(exported)
    spec = manifest.graphs["model"]
    session = OnnxSession(exported / spec.file, spec, SessionConfig())
    predictor = NerPredictor.from_artifact(exported, manifest, {"model": session})
    text = "John Smith visited New York.  Acme Corp shares rose in Paris on Monday."
    (prediction,) = predictor.predict_texts([text])
    assert len(prediction.tokens) == 15
    for item in [*prediction.tokens, *prediction.entities]:
        assert text[item.start : item.end] == item.text
    tags = ["O"] + [t.tag for t in prediction.tokens]
    for previous, tag in itertools.pairwise(tags):
        assert not tag.startswith("I-") or previous[2:] == tag[2:]  # the CRF's constraints hold


def test_evaluate_reports_seqeval_scores_equal_to_the_manifest(exported, tiny_conll, capsys):
    args = ["evaluate", "ner", "--data", str(tiny_conll / "conll2003/valid.txt")]
    assert main([*args, "--model", str(exported)]) == 0
    out = capsys.readouterr().out
    for kind in ["PER", "LOC", "ORG", "MISC", "micro avg"]:
        assert re.search(rf"^\s*{kind}\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+$", out, re.MULTILINE), kind
    f1 = float(re.search(r"overall: precision [\d.]+ recall [\d.]+ F1 ([\d.]+)", out).group(1))
    assert f1 == pytest.approx(load_manifest(exported).metrics["dev_f1"], abs=0.006)


def test_a_failed_export_leaves_the_previous_model_untouched(
    trained, exported, tmp_path, monkeypatch
):
    out = Path(shutil.copytree(exported, tmp_path / "ner"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(*args, **kwargs):
        raise VerificationError("dev sentence 3: numpy Viterbi over ONNX emissions differs")

    monkeypatch.setattr(ner, "verify_tags", fail)
    with pytest.raises(VerificationError):
        main(["export", "ner", "--checkpoint", str(trained / "best.pt"), "--out", str(out)])

    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ner"]


def test_export_reads_the_dev_data_from_datasets_dir(
    trained, exported, tiny_conll, moved_checkpoint, tmp_path, capsys
):
    checkpoint = moved_checkpoint(trained / "best.pt")
    args = ["export", "ner", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "ner")]
    assert main(args) == 2  # "error: ...", no traceback
    assert "no-such-datasets" in capsys.readouterr().err

    assert main([*args, "--datasets-dir", str(tiny_conll)]) == 0

    assert load_manifest(tmp_path / "ner").metrics == load_manifest(exported).metrics


def test_dry_run_trains_a_few_batches(tiny_conll, tmp_path):
    args = ["train", "ner", "--dry-run", "--run-dir", str(tmp_path), *overrides(tiny_conll)]
    assert main(args) == 0
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_own_entity_types_are_trained_exported_and_served(tiny_conll, tmp_path):
    """A data set with other entity types (here PER -> PERSON, LOC -> PLACE, in files outside
    the datasets folder): the tag set comes from the training file, and the checkpoint, the
    export, the manifest and the service's predictor all use it."""
    renamed = {}
    for split in ("train", "valid"):
        text = (tiny_conll / f"conll2003/{split}.txt").read_text("utf-8")
        text = re.sub(r"-PER$", "-PERSON", re.sub(r"-LOC$", "-PLACE", text, flags=re.M), flags=re.M)
        renamed[split] = tmp_path / f"news.{split}"
        renamed[split].write_text(text, "utf-8")
    own = [
        f"data.train_file={renamed['train']}",
        f"data.dev_file={renamed['valid']}",
        "data.name=news",
    ]
    run = tmp_path / "run"
    args = ["train", "ner", "--run-dir", str(run), "--set", "trainer.epochs=3"]
    assert main(args + overrides(tiny_conll) + [a for s in own for a in ("--set", s)]) == 0
    tags = ["O", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PERSON", "I-PERSON", "B-PLACE"]
    tags += ["I-PLACE"]  # every type of the training file, sorted

    out = tmp_path / "models" / "ner"
    assert main(["export", "ner", "--checkpoint", str(run / "best.pt"), "--out", str(out)]) == 0
    manifest = load_manifest(out)
    assert manifest.labels == tags
    assert {"dev_f1_PERSON", "dev_f1_PLACE"} <= manifest.metrics.keys()
    assert [(d.name, d.split, d.source) for d in manifest.training_data] == [
        ("news", "train", str(renamed["train"])),
        ("news", "valid", str(renamed["valid"])),
    ]
    sessions = {
        name: OnnxSession(manifest.path_of(out, name), spec, SessionConfig())
        for name, spec in manifest.graphs.items()
    }
    predictor = NerPredictor.from_artifact(out, manifest, sessions)
    (result,) = predictor.predict_batch(["John Smith visited Paris ."])
    assert {e.type for e in result.entities} <= {"PERSON", "PLACE", "ORG", "MISC"}
    assert {t.tag for t in result.tokens} <= set(tags)


def test_entity_types_outside_the_pinned_ones_are_an_error(tiny_conll, tmp_path, capsys):
    pinned = ["--set", 'data.entity_types=["PER", "LOC"]', "--set", "trainer.epochs=1"]
    args = ["train", "ner", "--run-dir", str(tmp_path / "run"), *pinned]
    assert main(args + overrides(tiny_conll)) == 2
    err = capsys.readouterr().err
    assert "error: conll2003/train.txt has tags ['B-MISC', 'B-ORG', 'I-ORG']" in err
    assert "data.entity_types" in err


def test_the_truecaser_is_fitted_on_the_training_sentences_and_exported(
    trained, tiny_conll, exported
):
    import torch

    from service.text.truecase import Truecaser
    from training import data
    from training.tasks.ner import sentences_of

    sentences = sentences_of(data.read_conll(tiny_conll / "conll2003" / "train.txt"))
    tables = torch.load(trained / "best.pt", weights_only=True)["truecase"]
    assert tables["forms"] and tables == Truecaser.fit(sentences).tables()
    assert Truecaser.from_json(exported / "truecase.json").tables() == tables


def test_export_needs_only_the_dev_file(trained, tiny_conll, tmp_path):
    """The training file may be gone by export time: it verifies on the dev set alone."""
    dev_only = tmp_path / "datasets"
    (dev_only / "conll2003").mkdir(parents=True)
    shutil.copy(tiny_conll / "conll2003/valid.txt", dev_only / "conll2003/valid.txt")
    args = ["export", "ner", "--checkpoint", str(trained / "best.pt")]
    assert main([*args, "--out", str(tmp_path / "out"), "--datasets-dir", str(dev_only)]) == 0


def test_training_without_glove(tiny_conll, tmp_path):
    """vocab.glove_path=none: random word vectors, a vocabulary of training words only, and
    no GloVe file needed."""
    no_glove = tmp_path / "datasets"
    shutil.copytree(tiny_conll / "conll2003", no_glove / "conll2003")
    settings = [s.replace(str(tiny_conll), str(no_glove)) for s in overrides(tiny_conll)]
    run = tmp_path / "run"
    args = ["train", "ner", "--run-dir", str(run), "--set", "trainer.epochs=1"]
    assert main([*args, *settings, "--set", "vocab.glove_path=none"]) == 0
    words = torch.load(run / "best.pt", weights_only=True)["vocab"]
    training = {
        w.lower()
        for s in (no_glove / "conll2003/train.txt").read_text().splitlines()[2:]
        for w in s.split()[:1]
    }
    assert set(words[2:]) == training  # the two special tokens, then training words only


@pytest.mark.parametrize(
    "types", ["PER,ORG", '["PER", "ORG", "PER"]', '["PER", "NEW TYPE"]', "[1, 2]"]
)
def test_entity_types_that_are_not_a_list_of_distinct_names_are_an_error(
    tiny_conll, tmp_path, capsys, types
):
    args = [
        "train",
        "ner",
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        f"data.entity_types={types}",
    ]
    assert main(args + overrides(tiny_conll)) == 2
    assert f"error: data.entity_types={types!r}: " in capsys.readouterr().err


def test_evaluate_ner_refuses_another_task_s_model_or_no_model(tmp_path, capsys, exported):
    sentiment = Path(__file__).resolve().parents[2] / "exported_models" / "sentiment"
    gold = tmp_path / "gold.txt"
    gold.write_text("EU NNP B-NP B-ORG\n", "utf-8")
    for model, message in [
        (sentiment, "holds a 'sentiment' model, not a 'ner' model"),
        (tmp_path / "missing", "missing"),
    ]:
        assert main(["evaluate", "ner", "--data", str(gold), "--model", str(model)]) == 2
        assert message in capsys.readouterr().err
    assert main(["evaluate", "ner", "--data", str(tmp_path), "--model", str(exported)]) == 2
    assert "error: " in capsys.readouterr().err  # a folder, not a file


def test_a_training_file_without_entities_is_refused(tiny_conll, tmp_path, capsys):
    plain = tmp_path / "plain.conll"
    plain.write_text("EU O\nrejects O\n\nGerman O\n", "utf-8")
    args = ["train", "ner", "--run-dir", str(tmp_path / "run"), *overrides(tiny_conll)]
    assert main([*args, "--set", f"data.train_file={plain}"]) == 2
    assert (
        f"error: {plain}: no entities (every tag is O): nothing to learn" in capsys.readouterr().err
    )
