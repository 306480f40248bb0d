"""The README's model table names each metric after the data set it was measured on."""

import json
import shutil
from pathlib import Path

from training.cli import main
from training.model_card import model_table

MODELS = Path(__file__).resolve().parents[2] / "exported_models"


def _copy(name: str, tmp_path: Path, **changes) -> Path:
    folder = tmp_path / name
    shutil.copytree(MODELS / name, folder)
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    return folder


def test_metrics_and_terms_of_a_model_trained_on_other_data(tmp_path):
    ner = json.loads((MODELS / "ner/manifest.json").read_text("utf-8"))
    data = [dict(d, name="news", source=f"news/{d['split']}.txt") for d in ner["training_data"]]
    _copy("ner", tmp_path, training_data=data)
    sentiment = dict(dev_reviews_accuracy=91.5, dev_mean_accuracy=91.5)
    reviews = [dict(name="reviews", split="dev", examples=30, source="dev.tsv")]
    _copy("sentiment", tmp_path, metrics=sentiment, training_data=reviews, variants={})

    table = model_table(tmp_path)

    f1 = ner["metrics"]["dev_f1"]
    assert f"news valid entity F1 **{f1:.2f}**" in table
    assert "reviews dev accuracy **91.50**" in table
    assert "CoNLL-2003" not in table and "SST" not in table  # neither the names nor the terms
    assert "GloVe: PDDL 1.0" in table  # both still start from GloVe


def test_the_committed_models_keep_their_data_sets_names():
    table = model_table(MODELS)
    assert "CoNLL-2003 valid entity F1 **" in table
    assert "Multi30k val sacreBLEU, beam **" in table
    assert "SST-2 dev accuracy **" in table


def test_a_model_trained_without_glove_lists_no_glove_terms(tmp_path):
    ner = json.loads((MODELS / "ner/manifest.json").read_text("utf-8"))
    config = ner["training_config"]
    config["vocab"]["glove_path"] = None
    data = [dict(d, name="news") for d in ner["training_data"]]
    _copy("ner", tmp_path, training_config=config, training_data=data)

    assert "GloVe" not in model_table(tmp_path)


def test_an_export_s_hidden_work_folder_is_not_a_model(tmp_path):
    _copy("sentiment", tmp_path)
    shutil.copytree(tmp_path / "sentiment", tmp_path / ".sentiment.old-0a1b2c3d")

    assert model_table(tmp_path).count("| `sentiment` |") == 1


def test_a_folder_without_models_is_an_error_not_an_empty_table(tmp_path, capsys):
    assert main(["model-card", "--models", str(tmp_path)]) == 2
    assert f"error: {tmp_path}: no model folders" in capsys.readouterr().err
