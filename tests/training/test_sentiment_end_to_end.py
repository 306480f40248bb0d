"""Training smoke test: tiny data, one epoch, export, verification, service-side loading."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import training.quantize as quantize
import training.tasks.sentiment as sentiment
from service.runtime.manifest import load_manifest
from service.text import Vocab, WordEncoder, pad_batch
from service.text.encoding import WordEncoderConfig
from tests.training.conftest import as_set_options, tiny_sentiment_settings
from training.cli import main
from training.verify import VerificationError


@pytest.fixture(scope="module")
def trained(tiny_datasets, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    settings = [*tiny_sentiment_settings(tiny_datasets), "trainer.epochs=2"]
    args = ["train", "sentiment", "--run-dir", str(run_dir)]
    assert main(args + as_set_options(settings)) == 0
    return run_dir


def test_run_folder_has_config_log_metrics_and_curve(trained):
    for name in [
        "config.json",
        "train.log",
        "metrics.jsonl",
        "learning_curve.png",
        "best.pt",
        "last.pt",
    ]:
        assert (trained / name).is_file(), name
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"dev_sst2_accuracy", "dev_imdb_accuracy", "train_loss"} <= records[0].keys()


def test_resume_continues_from_the_last_epoch(trained):
    config = json.loads((trained / "config.json").read_text())
    args = [
        "train",
        "sentiment",
        "--run-dir",
        str(trained),
        "--resume",
        "--set",
        "trainer.epochs=3",
    ]
    overrides = [
        f"data.datasets_dir={config['data']['datasets_dir']}",
        f"vocab.glove_path={config['vocab']['glove_path']}",
        "data.imdb_holdout=20",
        "trainer.threads=1",
        "model.hidden_size=16",
        "max_tokens=40",
    ]
    assert main(args + [a for o in overrides for a in ("--set", o)]) == 0
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]


def test_export_writes_a_verified_artifact_the_service_can_read(trained, tmp_path):
    out = tmp_path / "sentiment"
    assert (
        main(["export", "sentiment", "--checkpoint", str(trained / "best.pt"), "--out", str(out)])
        == 0
    )
    manifest = load_manifest(out)
    assert manifest.labels == ["negative", "positive"]
    assert set(manifest.files) == {"model.onnx", "vocab.json", "labels.json", "MODEL_CARD.md"}
    assert {"dev_sst2_accuracy", "dev_imdb_accuracy"} <= manifest.metrics.keys()
    card = (out / "MODEL_CARD.md").read_text("utf-8")
    accuracy = manifest.metrics["dev_sst2_accuracy"]
    assert f"| SST-2 dev accuracy (`dev_sst2_accuracy`) | {accuracy:.2f} |" in card

    encoder = WordEncoder(
        Vocab.from_json(out / "vocab.json"), WordEncoderConfig(**manifest.preprocessing)
    )
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ids, lengths = pad_batch([encoder.encode(t).ids for t in ["A wonderful film", "Dull. " * 30]])
    probabilities = session.run(["probabilities"], {"token_ids": ids, "lengths": lengths})[0]
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def export(trained, out) -> int:
    return main(
        ["export", "sentiment", "--checkpoint", str(trained / "best.pt"), "--out", str(out)]
    )


def test_a_failed_export_leaves_the_previous_model_untouched(trained, tmp_path, monkeypatch):
    out = tmp_path / "sentiment"
    assert export(trained, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(*args, **kwargs):
        raise VerificationError("probabilities alone vs in a padded batch: difference 0.2")

    monkeypatch.setattr(sentiment, "check_batch_invariance", fail)
    with pytest.raises(VerificationError):
        export(trained, out)

    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["sentiment"]


def test_a_new_export_drops_the_int8_variant_of_the_previous_model(trained, tmp_path, monkeypatch):
    out = tmp_path / "sentiment"
    assert export(trained, out) == 0
    monkeypatch.setattr(
        quantize, "measure_speed", lambda *args: {n: {"fp32": 2e-3, "int8": 1e-3} for n in (1, 32)}
    )
    quick = ["--speed-texts", "8", "--repeats", "1", "--force"]
    assert main(["quantize", "sentiment", "--model-dir", str(out), *quick]) == 0
    assert (out / "model.int8.onnx").is_file() and load_manifest(out).variants

    assert export(trained, out) == 0

    manifest = load_manifest(out)  # every sha256 checked
    assert manifest.variants == {} and not (out / "model.int8.onnx").exists()
    assert main(["quantize", "sentiment", "--model-dir", str(out), *quick]) == 0  # again


def test_export_reads_the_dev_data_from_datasets_dir(
    trained, tiny_datasets, moved_checkpoint, tmp_path, capsys
):
    assert export(trained, tmp_path / "here") == 0
    checkpoint = moved_checkpoint(trained / "best.pt")
    args = ["export", "sentiment", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")]
    assert main(args) == 2  # "error: ...", no traceback
    assert "no-such-datasets" in capsys.readouterr().err

    assert main([*args, "--datasets-dir", str(tiny_datasets)]) == 0

    metrics = load_manifest(tmp_path / "out").metrics
    assert metrics == load_manifest(tmp_path / "here").metrics  # measured on the same dev data


def test_dry_run_trains_a_few_batches(tiny_datasets, tmp_path):
    args = [
        "train",
        "sentiment",
        "--dry-run",
        "--run-dir",
        str(tmp_path),
        "--set",
        f"data.datasets_dir={tiny_datasets}",
        "--set",
        f"vocab.glove_path={tiny_datasets}/glove/glove.6B.50d.txt.gz",
        "--set",
        "data.imdb_holdout=20",
        "--set",
        "model.hidden_size=8",
    ]
    assert main(args) == 0
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_second_stage_starts_from_a_checkpoint(trained, tiny_datasets, tmp_path):
    args = [
        "train", "sentiment", "--run-dir", str(tmp_path),
        "--set", f"init_from={trained / 'best.pt'}",
        "--set", "data.train_imdb=false",
        "--set", f"data.datasets_dir={tiny_datasets}",
        "--set", f"vocab.glove_path={tiny_datasets}/glove/glove.6B.50d.txt.gz",
        "--set", "data.imdb_holdout=20", "--set", "trainer.epochs=1",
        "--set", "trainer.threads=1", "--set", "model.hidden_size=16", "--set", "max_tokens=40",
    ]  # fmt: skip
    assert main(args) == 0
    first = torch.load(trained / "best.pt", weights_only=True)
    second = torch.load(tmp_path / "best.pt", weights_only=True)
    assert second["vocab"] == first["vocab"]
    splits = [(d["name"], d["split"]) for d in second["training_data"]]
    assert ("imdb", "train minus held-out (seed 1234)") in splits  # the first stage's data


def test_a_second_stage_of_another_size_is_refused_naming_the_settings(
    trained, tiny_datasets, tmp_path, capsys
):
    args = [
        "train", "sentiment", "--run-dir", str(tmp_path),
        "--set", f"init_from={trained / 'best.pt'}",
        "--set", f"data.datasets_dir={tiny_datasets}",
        "--set", f"vocab.glove_path={tiny_datasets}/glove/glove.6B.50d.txt.gz",
        "--set", "data.imdb_holdout=20", "--set", "model.hidden_size=12",
    ]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "its weights do not fit this model" in error
    assert "the checkpoint has model.hidden_size=16 (this run: 12)" in error


def test_frozen_embeddings_keep_their_vectors_while_the_rest_learns():
    from training.models.sentiment import SentimentClassifier

    torch.manual_seed(0)
    model = SentimentClassifier(30, hidden_size=8, embedding_dim=6, freeze_embeddings=True)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    ids, lengths = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])
    torch.nn.functional.cross_entropy(model(ids, lengths), torch.tensor([0, 1])).backward()
    optimizer.step()

    after = dict(model.named_parameters())
    assert torch.equal(after["embedding.weight"], before["embedding.weight"])
    assert not torch.equal(after["output.weight"], before["output.weight"])


def test_evaluate_dev_measures_the_manifest_s_metrics_again(
    trained, tiny_datasets, tmp_path, capsys
):
    # The IMDB held-out reviews exist in no file: --dev rebuilds them with the recorded seed.
    assert export(trained, tmp_path / "model") == 0
    metrics = load_manifest(tmp_path / "model").metrics
    capsys.readouterr()

    args = ["evaluate", "sentiment", "--dev", "--model", str(tmp_path / "model")]
    assert main([*args, "--datasets-dir", str(tiny_datasets)]) == 0

    out = capsys.readouterr().out
    assert f"sst2: accuracy {metrics['dev_sst2_accuracy']:.2f}" in out
    assert f"imdb: accuracy {metrics['dev_imdb_accuracy']:.2f}" in out
    assert "imdb dev set with" in out and "support" in out  # scikit-learn's report
    assert main([*args, "--data", "x.tsv"]) == 2
    assert main(["evaluate", "ner", "--dev"]) == 2
    assert "--dev is for sentiment" in capsys.readouterr().err
