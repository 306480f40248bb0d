"""Settings: defaults, a TOML file and ``--set`` overrides, each value checked as it is set."""

from pathlib import Path

import pytest

from training.cli import main
from training.config import from_dict, load_config, to_dict
from training.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_overrides_are_read_as_the_setting_s_type():
    config = load_config(
        "sentiment",
        CONFIGS / "sentiment.toml",
        [
            "trainer.lr=1e-4",
            "trainer.epochs=2",
            "model.bidirectional=false",
            "model.pooling = max",  # spaces around "=", as a shell quote keeps them
            "data.name=2024",  # a name, though it reads as a number
            "vocab.glove_path=None",  # any case
            "language_model.cutoffs=[100, 1000]",
            "trainer.max_batches=null",
        ],
    )
    assert config.trainer.lr == 1e-4 and config.trainer.epochs == 2
    assert config.model.bidirectional is False and config.model.pooling == "max"
    assert config.data.name == "2024"
    assert config.vocab.glove_path is None and config.trainer.max_batches is None
    assert config.language_model.cutoffs == [100, 1000]
    assert config.model.hidden_size == 150  # from the TOML file


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.lr=abc", "trainer.lr='abc': Input should be a valid number"),
        ("trainer.epochs=0", "trainer.epochs='0': Input should be greater than 0"),
        ("model.cell=lstn", "model.cell='lstn': Input should be 'rnn', 'gru' or 'lstm'"),
        ("model.dropout=1.5", "model.dropout='1.5': Input should be less than 1"),
        ("trainer.lrr=0.1", "unknown setting 'trainer.lrr' (settings here: trainer.epochs, "),
        ("nokey=1", "unknown setting 'nokey' (settings here: task, text, data, "),
        ("trainer=3", "'trainer' is a group of settings"),
        ("trainer.lr", "--set 'trainer.lr': give key=value"),
        ("task=ner", "task='ner': Input should be 'sentiment'"),
        ("trainer.epochs=true", "trainer.epochs='true': Input should be a valid integer"),
        ("trainer.lr=inf", "trainer.lr='inf': Input should be a finite number"),
        ("language_model.cutoffs=[5000, 500]", "language_model.cutoffs='[5000, 500]': Value"),
    ],
)
def test_a_wrong_setting_is_an_error_naming_it(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("sentiment", None, [override])
    assert str(error.value).startswith(message)


def test_the_cli_stops_before_reading_data_on_a_wrong_setting(tmp_path, capsys):
    args = ["train", "sentiment", "--run-dir", str(tmp_path / "run"), "--set", "trainer.lr=abc"]
    assert main(args) == 2  # no traceback
    assert "error: trainer.lr='abc': Input should be a valid number" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_toml_file_with_a_wrong_value_or_syntax_is_named(tmp_path):
    bad_value = tmp_path / "value.toml"
    bad_value.write_text('[model]\ncell = "transformer"\n', "utf-8")
    with pytest.raises(ConfigError, match=f"^{bad_value}: model.cell='transformer': "):
        load_config("ner", bad_value)

    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[data]\nname = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=f"^{latin1}: not a valid TOML file"):
        load_config("ner", latin1)

    bad_syntax = tmp_path / "syntax.toml"
    bad_syntax.write_text("[model\n", "utf-8")
    with pytest.raises(ConfigError, match=f"^{bad_syntax}: not a valid TOML file"):
        load_config("ner", bad_syntax)


def test_a_saved_configuration_round_trips_and_keeps_the_task_s_defaults():
    config = load_config("ner", CONFIGS / "ner.toml", ["trainer.epochs=3"])
    assert from_dict("ner", to_dict(config)) == config

    # Settings missing from a saved configuration take the task's defaults, not the section's.
    saved = to_dict(config)
    del saved["trainer"]["patience"]
    assert from_dict("ner", saved).trainer.patience == 6  # NER's default, not TrainerConfig's 3


def test_a_configuration_saved_before_a_later_setting_keeps_the_old_behaviour():
    """The sentiment text settings came later, on by default: a model trained before them was
    trained with both off, and its saved configuration must say so."""
    saved = to_dict(load_config("sentiment"))
    del saved["text"]

    assert from_dict("sentiment", saved).text.lowercase_first is False
    assert from_dict("sentiment", saved).text.fold_apostrophes is False
    assert load_config("sentiment").text.lowercase_first is True  # new runs


@pytest.mark.parametrize("task", ["sentiment", "ner", "translation"])
def test_a_relative_datasets_dir_is_saved_absolute(task, tmp_path, monkeypatch):
    # A run trained with data.datasets_dir=. must still find its dev data when exported from
    # another folder.
    monkeypatch.chdir(tmp_path)
    config = load_config(task, None, ["data.datasets_dir=data"])
    assert to_dict(config)["data"]["datasets_dir"] == str(tmp_path / "data")


def test_a_toml_boolean_is_not_read_as_a_number(tmp_path):
    # pydantic reads True as 1 for an integer: epochs = true trained one epoch.
    path = tmp_path / "bool.toml"
    path.write_text("[trainer]\nepochs = true\n\n[model]\nbidirectional = false\n", "utf-8")
    with pytest.raises(ConfigError, match=r"trainer\.epochs=True: a true/false value for a"):
        load_config("sentiment", path)
    path.write_text("[model]\nbidirectional = false\n", "utf-8")
    assert load_config("sentiment", path).model.bidirectional is False
