"""The sentiment model on a user's own labelled texts: the reader's formats and errors, and a
run trained, selected, exported and evaluated on them alone."""

import json
import random
import re
from pathlib import Path

import pytest

from service.runtime.manifest import load_manifest
from training.cli import main
from training.data import DataError, LabeledText, read_labeled_texts

from .conftest import NEGATIVE, POSITIVE, _sentence


def test_tsv_with_a_header_every_label_form_and_tabs_in_the_text(tmp_path):
    path = tmp_path / "own.tsv"
    path.write_text(
        "text\tlabel\n"
        "a fine film\t1\n"
        "\n"  # blank lines are skipped
        "a dull\tfilm\tnegative\n"  # the label is the last field
        "Loved it\tPOS\n"
        "hated it\tneg\r\n"
        "meh\t0\n",
        "utf-8",
    )
    assert read_labeled_texts(path) == [
        LabeledText("a fine film", 1),
        LabeledText("a dull\tfilm", 0),
        LabeledText("Loved it", 1),
        LabeledText("hated it", 0),
        LabeledText("meh", 0),
    ]


def test_tsv_without_a_header_and_json_lines(tmp_path):
    tsv = tmp_path / "own.tsv"
    tsv.write_text("great\tpositive\n", "utf-8")
    assert read_labeled_texts(tsv) == [LabeledText("great", 1)]
    jsonl = tmp_path / "own.jsonl"
    lines = [{"text": "two\nlines", "label": 1}, {"text": "bad", "label": "Negative"}]
    jsonl.write_text("\n".join(json.dumps(line) for line in lines) + "\n", "utf-8")
    assert read_labeled_texts(jsonl) == [LabeledText("two\nlines", 1), LabeledText("bad", 0)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("own.tsv", "fine\t1\nno tab here\n", r"own.tsv:2: expected 'text<TAB>label'"),
        ("own.tsv", "fine\t1\nfine\t2\n", r"own.tsv:2: unknown label '2'"),
        ("own.tsv", "label\ttext\n1\tfine\n", r"own.tsv:1: .* the label comes last"),
        ("own.tsv", "1\tfine\n", r"own.tsv:1: unknown label 'fine'.* the label comes last"),
        ("own.json", '{"text": "fine", "label": 1}\n', r"own.json:1: .* name ending in \.jsonl"),
        ("own.tsv", "fine\t1\n  \tpositive\n", r"own.tsv:2: the text is empty"),
        ("own.jsonl", '{"text": "x", "label": 1}\n{"text": "x"\n', r"own.jsonl:2: not a JSON"),
        ("own.jsonl", '["x", 1]\n', r'own.jsonl:1: expected \{"text"'),
        ("own.jsonl", '{"text": 3, "label": 1}\n', r"own.jsonl:1: the text is not a string: 3"),
        ("own.jsonl", '{"text": "", "label": 1}\n', r"own.jsonl:1: the text is empty"),
        ("own.tsv", "fine\t1\t\n", r"own.tsv:1: unknown label ''.* the line ends with a TAB"),
        # A header is read on the first line only: two files joined are refused where they meet.
        ("own.tsv", "fine\t1\ntext\tlabel\n", r"own.tsv:2: unknown label 'label'"),
        ("own.jsonl", '{"text": "no label"}\n', r'own.jsonl:1: expected \{"text"'),
        ("own.jsonl", '{"label": 1}\n', r'own.jsonl:1: expected \{"text"'),
    ],
)
def test_a_bad_line_is_refused_with_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, "utf-8")
    with pytest.raises(DataError, match=message):
        read_labeled_texts(path)


def _write_own(path, count, seed):
    rng = random.Random(seed)
    lines = ["text\tlabel"]
    for i in range(count):
        label = i % 2
        words = POSITIVE if label else NEGATIVE
        lines.append(f"{_sentence(rng, words, rng.randint(2, 8))}\t{['neg', 'pos'][label]}")
    path.write_text("\n".join(lines) + "\n", "utf-8")


def _train(run_dir, datasets, *overrides):
    settings = [
        f"data.datasets_dir={datasets}",  # GloVe too: vocab.glove_path is relative to it
        "trainer.epochs=1",
        "trainer.threads=1",
        "model.hidden_size=8",
        *overrides,
    ]
    args = ["train", "sentiment", "--run-dir", str(run_dir)]
    return main(args + [a for s in settings for a in ("--set", s)])


def test_a_model_trained_selected_and_exported_on_own_data_alone(tiny_datasets, tmp_path, capsys):
    """Files outside the datasets folder (absolute paths), SST and IMDB switched off: the run's
    dev metric and the manifest name the user's data set, and nothing else."""
    _write_own(tmp_path / "train.tsv", 200, seed=1)
    _write_own(tmp_path / "dev.tsv", 30, seed=2)
    run = tmp_path / "run"
    assert (
        _train(
            run,
            tiny_datasets,
            "data.use_sst=false",
            "data.use_imdb=false",
            f"data.train_file={tmp_path / 'train.tsv'}",
            f"data.dev_file={tmp_path / 'dev.tsv'}",
            "data.name=reviews",
        )
        == 0
    )
    (epoch,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {k for k in epoch if k.startswith("dev_")} == {
        "dev_reviews_accuracy",
        "dev_mean_accuracy",
    }

    (tmp_path / "train.tsv").unlink()  # the export verifies on the dev set alone
    out = tmp_path / "models" / "sentiment"
    export = ["export", "sentiment", "--checkpoint", str(run / "best.pt"), "--out", str(out)]
    assert main(export) == 0
    manifest = load_manifest(out)  # checks every file's sha256 too
    vocab = json.loads((out / "vocab.json").read_text("utf-8"))["tokens"]
    assert len(vocab) < 100  # the tiny GloVe of data.datasets_dir filled it, not the real one
    assert set(manifest.metrics) == {"dev_reviews_accuracy", "dev_mean_accuracy"}
    assert manifest.metrics["dev_reviews_accuracy"] == pytest.approx(
        epoch["dev_reviews_accuracy"], abs=1e-6
    )
    assert [(s.name, s.split, s.examples, s.source) for s in manifest.training_data] == [
        ("reviews", "train", 200, str(tmp_path / "train.tsv")),
        ("reviews", "dev", 30, str(tmp_path / "dev.tsv")),
    ]

    # The same file scored through the service's predictor gives the export's accuracy.
    capsys.readouterr()
    evaluate = ["evaluate", "sentiment", "--data", str(tmp_path / "dev.tsv"), "--model", str(out)]
    assert main(evaluate) == 0
    printed = capsys.readouterr().out
    assert f"overall: accuracy {manifest.metrics['dev_reviews_accuracy']:.2f}" in printed
    assert re.search(r"^\s*positive\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+15$", printed, re.M)


def test_own_data_settings_that_select_nothing_or_clash_are_errors(tiny_datasets, tmp_path, capsys):
    _write_own(tmp_path / "train.tsv", 20, seed=3)
    nothing = ("data.use_sst=false", "data.use_imdb=false")
    assert _train(tmp_path / "a", tiny_datasets, *nothing) == 2
    assert "error: no training data or no dev data" in capsys.readouterr().err
    own_train_only = (*nothing, f"data.train_file={tmp_path / 'train.tsv'}")
    assert _train(tmp_path / "b", tiny_datasets, *own_train_only) == 2  # nothing to select on
    assert "error: no training data or no dev data" in capsys.readouterr().err
    clash = (f"data.dev_file={tmp_path / 'train.tsv'}", "data.name=sst2")
    assert _train(tmp_path / "c", tiny_datasets, *clash) == 2
    assert "error: data.name 'sst2' must be" in capsys.readouterr().err
    reserved = (
        *nothing,
        *own_train_only,
        f"data.dev_file={tmp_path / 'train.tsv'}",
        "data.name=imdb",
    )
    assert _train(tmp_path / "e", tiny_datasets, *reserved) == 2  # even with IMDB off
    assert "error: data.name 'imdb' must be" in capsys.readouterr().err
    missing = (f"data.train_file={tmp_path / 'missing.tsv'}",)
    assert _train(tmp_path / "d", tiny_datasets, *missing) == 2
    assert "missing.tsv" in capsys.readouterr().err
    (tmp_path / "header.tsv").write_text("text\tlabel\n", "utf-8")
    header_only = (*own_train_only, f"data.dev_file={tmp_path / 'header.tsv'}")
    assert _train(tmp_path / "f", tiny_datasets, *header_only) == 2  # no NaN dev metric
    assert "header.tsv: no labelled texts (the own dev set)" in capsys.readouterr().err
    assert _train(tmp_path / "g", tiny_datasets, "model.embedding_dim=7") == 2
    assert "dimensions, model.embedding_dim=7: set model.embedding_dim=" in capsys.readouterr().err


def test_language_model_pre_training_reads_the_own_training_texts(tiny_datasets, tmp_path):
    from training.config import load_config
    from training.tasks.sentiment import unlabelled_texts

    _write_own(tmp_path / "train.tsv", 12, seed=4)
    config = load_config(
        "sentiment",
        overrides=[
            f"data.datasets_dir={tiny_datasets}",
            "data.use_imdb=false",
            f"data.train_file={tmp_path / 'train.tsv'}",
            "data.name=reviews",
        ],
    )
    texts, sources = unlabelled_texts(config)
    own = {r.text for r in read_labeled_texts(tmp_path / "train.tsv")}
    assert own <= set(texts) and len(texts) == len(own) + 300  # + the SST training sentences
    assert [(s["name"], s["examples"]) for s in sources] == [("sst_trees", 300), ("reviews", 12)]


def test_evaluate_sentiment_refuses_another_task_s_model(tmp_path, capsys):
    path = tmp_path / "own.tsv"
    path.write_text("fine\t1\n", "utf-8")
    model = ["--model", str(Path(__file__).resolve().parents[2] / "exported_models" / "ner")]
    assert main(["evaluate", "sentiment", "--data", str(path), *model]) == 2
    assert "holds a 'ner' model, not a 'sentiment' model" in capsys.readouterr().err
