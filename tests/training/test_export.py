"""``training.export.write_artifact``: an artifact folder is replaced all at once by a verified
one, or left as it was."""

from pathlib import Path

import pytest

from service.runtime.manifest import GraphSpec, Manifest, load_manifest
from training.export import write_artifact
from training.verify import VerificationError


def artifact_manifest(version: str) -> Manifest:
    return Manifest(
        task="sentiment",
        name="sentiment",
        version=version,
        created_at="2026-01-01T00:00:00+00:00",
        opset=17,
        graphs={"model": GraphSpec(file="model.onnx", inputs=[], outputs=[])},
        labels=["negative", "positive"],
        preprocessing={},
        training_data=[],
        metrics={"dev_accuracy": 80.0},
        training_config={},
        files={},
    )


def build(version: str, seen: list[Path] | None = None):
    """A stand-in for a task's build step: two files, then their manifest."""

    def write(folder: Path) -> Manifest:
        if seen is not None:
            seen.append(folder)
        assert not (folder / "manifest.json").exists()  # written only after the checks
        (folder / "model.onnx").write_bytes(f"graph {version}".encode())
        (folder / "vocab.json").write_text(f"vocab {version}", "utf-8")
        return artifact_manifest(version)

    return write


def failing(folder: Path) -> Manifest:
    (folder / "model.onnx").write_bytes(b"an unverified graph")
    raise VerificationError("ONNX Runtime vs PyTorch: max abs difference 0.3")


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_first_export_creates_the_folder_with_its_manifest(tmp_path):
    seen: list[Path] = []
    out = tmp_path / "models" / "sentiment"

    path = write_artifact(out, build("1", seen))

    assert path == out / "manifest.json"
    assert load_manifest(out).files.keys() == {"model.onnx", "vocab.json", "MODEL_CARD.md"}
    assert seen[0].parent == out.parent and seen[0] != out  # built next to it, then renamed
    assert [p.name for p in out.parent.iterdir()] == ["sentiment"]


def test_a_new_export_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "sentiment"
    write_artifact(out, build("1"))
    (out / "model.int8.onnx").write_bytes(b"quantized from version 1")

    write_artifact(out, build("2"))

    assert load_manifest(out).version == "2"
    assert sorted(contents(out)) == ["MODEL_CARD.md", "manifest.json", "model.onnx", "vocab.json"]
    assert (out / "model.onnx").read_bytes() == b"graph 2"
    assert [p.name for p in tmp_path.iterdir()] == ["sentiment"]


def test_a_failed_export_leaves_the_previous_model_untouched(tmp_path):
    out = tmp_path / "sentiment"
    write_artifact(out, build("1"))
    (out / "model.int8.onnx").write_bytes(b"quantized from version 1")
    before = contents(out)

    with pytest.raises(VerificationError, match="max abs difference"):
        write_artifact(out, failing)

    assert contents(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["sentiment"]  # the new folder is gone


def test_a_failed_first_export_leaves_no_folder(tmp_path):
    with pytest.raises(VerificationError):
        write_artifact(tmp_path / "sentiment", failing)

    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_is_refused_before_any_work(tmp_path):
    (tmp_path / "sentiment").write_text("not a folder", "utf-8")

    with pytest.raises(NotADirectoryError):
        write_artifact(tmp_path / "sentiment", build("1"))

    assert [p.name for p in tmp_path.iterdir()] == ["sentiment"]


def test_a_folder_of_other_files_is_refused_not_replaced(tmp_path):
    """MODEL_DIR itself, say: replacing it would delete every model in it."""
    models = tmp_path / "exported"
    write_artifact(models / "sentiment", build("1"))
    write_artifact(models / "ner", build("1"))
    (models / "NOTES.txt").write_text("mine", "utf-8")
    before = sorted(p.name for p in models.iterdir())

    with pytest.raises(FileExistsError, match=r"holds files but no manifest\.json") as refused:
        write_artifact(models, build("2"))

    assert f"model folders ner, sentiment: to replace one, name it (e.g. {models / 'ner'})" in str(
        refused.value
    )
    assert sorted(p.name for p in models.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]  # nothing built beside it


def test_an_empty_folder_is_written_into(tmp_path):
    (tmp_path / "sentiment").mkdir()

    write_artifact(tmp_path / "sentiment", build("1"))

    assert load_manifest(tmp_path / "sentiment").version == "1"
