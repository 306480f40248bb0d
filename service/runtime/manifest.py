"""The artifact contract: ``exported_models/<name>/manifest.json``.

Training writes a manifest next to the ONNX graph(s) and JSON vocabularies; the service reads
it back through :func:`load_manifest`, which validates every field and checks the sha256 of
every file, so a truncated copy or a hand-edited vocabulary is refused with the file's name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.text.constants import MANIFEST_FILE

Task = Literal["sentiment", "ner", "translation"]
TensorDType = Literal["int64", "int32", "float32", "bool"]


class ArtifactError(Exception):
    """An artifact folder that cannot be served: missing, malformed or tampered with."""


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: TensorDType
    shape: list[str | int] = Field(
        description="symbolic names for dynamic axes, ints for fixed ones"
    )


class GraphSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    split: str
    examples: int
    source: str = Field(description="where the data was read from, relative to the repository")


class Manifest(BaseModel):
    """Everything needed to serve, reproduce and audit one exported model."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal[1] = 1
    task: Task
    name: str
    version: str
    created_at: str
    opset: int
    graphs: dict[str, GraphSpec]
    labels: list[str]
    preprocessing: dict[str, Any]
    training_data: list[DatasetRef]
    metrics: dict[str, float] = Field(description="dev-set metrics measured at export")
    training_config: dict[str, Any]
    framework: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(description="sha256 of every file of the artifact but this one")

    def path_of(self, folder: Path, graph: str) -> Path:
        return Path(folder) / self.graphs[graph].file


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(folder: Path, *, verify: bool = True) -> Manifest:
    """Read and validate ``folder/manifest.json``; with ``verify``, check every file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no manifest (is this a model folder?)") from None
    except ValidationError as exc:
        raise ArtifactError(f"{path}: invalid manifest: {exc}") from None
    if verify:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Raise :class:`ArtifactError` naming the first file that is missing or altered."""
    for graph in manifest.graphs.values():
        if graph.file not in manifest.files:
            raise ArtifactError(
                f"{folder}: graph file {graph.file!r} has no sha256 in the manifest"
            )
    for name, expected in sorted(manifest.files.items()):
        file = folder / name
        if not file.is_file():
            raise ArtifactError(f"{file}: listed in the manifest but missing")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(
                f"{file}: sha256 mismatch (manifest {expected[:12]}…, file {actual[:12]}…); "
                "the artifact was modified after export: re-export the model"
            )


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Fill in the sha256 of every file in ``folder`` (but the manifest) and write it."""
    folder = Path(folder)
    files = {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }
    manifest = manifest.model_copy(update={"files": files})
    Manifest.model_validate(manifest.model_dump())
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path
