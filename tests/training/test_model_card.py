"""The README's model table and each model's card: measured figures, named after the data set
they were measured on, from manifests that vouch for them."""

import json
import shutil
from pathlib import Path

import pytest

from service.runtime.manifest import ArtifactError, load_manifest
from training.cli import main
from training.model_card import CARD_FILE, folder_card, model_table, write_cards

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


def test_every_committed_model_has_its_card_and_the_manifest_vouches_for_it():
    for name in ("sentiment", "ner", "translation"):
        folder = MODELS / name
        manifest = load_manifest(folder)  # every sha256 checked, the card's included
        assert CARD_FILE in manifest.files
        assert (folder / CARD_FILE).read_text("utf-8") == folder_card(folder, manifest), (
            f"{folder / CARD_FILE} is stale: run `python -m training model-card --write`"
        )


def test_a_card_gives_the_measured_metrics_data_and_limits_of_its_model():
    ner = load_manifest(MODELS / "ner")
    text = folder_card(MODELS / "ner", ner)

    assert f"| CoNLL-2003 valid entity F1 (`dev_f1`) | {ner.metrics['dev_f1']:.2f} |" in text
    assert "| conll2003 | train | 14,041 | `conll2003/train.txt` |" in text
    assert "Finds named entities (PER, ORG, LOC, MISC) in text" in text
    assert "Only these types are tagged: PER, ORG, LOC, MISC." in text
    assert "windows of at most 150" in text
    assert "Trained on English Reuters news stories from 1996" in text
    assert "| `model.hidden_size` | 200 |" in text
    translation = folder_card(MODELS / "translation", load_manifest(MODELS / "translation"))
    assert "| metric | fp32 | int8 |" in translation and "`MODEL_PRECISION=int8`" in translation
    assert "Source sentences longer than 199 subwords are cut" in translation  # 200 with eos
    assert "translates each on its own (the limits below are per sentence)" in translation
    assert "Multi30k's English side is plain ASCII" in translation


def test_the_card_of_a_model_trained_on_other_data_claims_no_domain(tmp_path):
    data = [dict(name="reviews", split="dev", examples=30, source="dev.tsv")]
    folder = _copy("sentiment", tmp_path, training_data=data, variants={})

    text = folder_card(folder, load_manifest(folder))

    assert "| reviews | dev | 30 | `dev.tsv` |" in text
    assert "Rotten Tomatoes" not in text and "IMDb" not in text
    assert "Quality outside the data above was not measured." in text


def test_write_makes_the_card_part_of_the_verified_artifact(tmp_path, capsys):
    files = json.loads((MODELS / "sentiment/manifest.json").read_text("utf-8"))["files"]
    del files[CARD_FILE]
    folder = _copy("sentiment", tmp_path, files=files)  # exported before models had cards
    (folder / CARD_FILE).unlink()

    assert main(["model-card", "--write", "--models", str(tmp_path)]) == 0

    assert f"wrote {folder / CARD_FILE}" in capsys.readouterr().out
    manifest = load_manifest(folder)
    assert (folder / CARD_FILE).read_text("utf-8") == folder_card(folder, manifest)
    (folder / CARD_FILE).write_text("edited by hand", "utf-8")
    with pytest.raises(ArtifactError, match=r"MODEL_CARD\.md: sha256 mismatch"):
        load_manifest(folder)


def test_write_refuses_a_folder_whose_files_were_altered(tmp_path, capsys):
    folder = _copy("sentiment", tmp_path)
    (folder / "labels.json").write_text('["bad", "good"]', "utf-8")
    manifest_before = (folder / "manifest.json").read_bytes()

    assert main(["model-card", "--write", "--models", str(tmp_path)]) == 2

    assert "labels.json: sha256 mismatch" in capsys.readouterr().err
    assert (folder / "manifest.json").read_bytes() == manifest_before  # not blessed


def test_write_refuses_files_the_manifest_does_not_list_and_writes_nothing(tmp_path):
    first, second = _copy("sentiment", tmp_path), _copy("ner", tmp_path)  # ner has no int8
    (second / "model.int8.onnx").write_bytes(b"left by an interrupted quantize")
    before = {p: p.read_bytes() for p in (first / "manifest.json", second / "manifest.json")}

    with pytest.raises(ArtifactError, match=r"model\.int8\.onnx not listed in manifest\.json"):
        write_cards(tmp_path)

    assert {p: p.read_bytes() for p in before} == before  # not even the folder that passed


def test_a_card_survives_odd_data_names_and_labels(tmp_path):
    data = [dict(name="news{2024}", split="valid", examples=3, source="v.txt")]
    folder = _copy("ner", tmp_path, training_data=data, labels=["O", "DATE", "NAME"])

    text = folder_card(folder, load_manifest(folder))

    assert "Finds named entities in text" in text and "Only these types" not in text
    assert "news{2024} valid entity F1 (`dev_f1`)" in text


def test_own_files_under_a_standard_data_set_s_name_claim_none_of_its_domain(tmp_path):
    """``data.name`` keeps its default when a user trains on files of their own."""
    ner = json.loads((MODELS / "ner/manifest.json").read_text("utf-8"))
    data = [dict(d, source=f"mine/{d['split']}.txt") for d in ner["training_data"]]
    folder = _copy("ner", tmp_path, training_data=data)

    text = folder_card(folder, load_manifest(folder))
    table = model_table(tmp_path)

    assert "Reuters" not in text and "CoNLL-2003" not in text and "CoNLL-2003" not in table
    assert "conll2003 valid entity F1 (`dev_f1`)" in text
