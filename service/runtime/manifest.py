"""The artifact contract: ``exported_models/<name>/manifest.json``.

Training writes a manifest next to the ONNX graph(s) and JSON vocabularies; the service reads
it back through :func:`load_manifest`, which validates every field and checks the sha256 of
every file, so a truncated copy or a hand-edited vocabulary is refused with the file's name.

A manifest may also list *variants*: other graph files computing the same outputs at another
precision (``int8``: ONNX Runtime dynamic quantization), each with the dev metrics and speed-up
measured when it was verified (``python -m training quantize``). The field is optional, so
manifests written before it existed stay valid under ``schema_version`` 1.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.text.constants import MANIFEST_FILE

Task = Literal["sentiment", "ner", "translation"]
TensorDType = Literal["int64", "int32", "float32", "bool"]
Precision = Literal["fp32", "int8"]
VariantName = Literal["int8"]  # every precision but the exported fp32 graphs


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


class VariantSpec(BaseModel):
    """Graph files at another precision, and the evidence that they may replace the fp32 ones.

    ``qualified`` is false only for a variant recorded with ``quantize --force`` although it
    missed the speed or accuracy criteria; the service still loads it, with a warning.
    """

    model_config = ConfigDict(extra="forbid")

    graphs: dict[str, str] = Field(description="graph name (a key of graphs) -> file")
    metrics: dict[str, float] = Field(description="dev-set metrics of the variant")
    speedup: dict[str, float] = Field(
        description="fp32 time / variant time per batch size, e.g. batch_1, batch_32"
    )
    quantization: dict[str, Any] = Field(
        default_factory=dict, description="how it was made and measured (tool, criteria, timing)"
    )
    qualified: bool = Field(description="met the speed and accuracy criteria when verified")


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
    variants: dict[VariantName, VariantSpec] = Field(
        default_factory=dict, description="verified graph files at other precisions"
    )

    @model_validator(mode="after")
    def _variants_cover_every_graph(self) -> Manifest:
        """A variant replaces every graph or none: a half-quantized model was never verified."""
        for name, variant in self.variants.items():
            if set(variant.graphs) != set(self.graphs):
                raise ValueError(
                    f"variant {name!r} has graphs {sorted(variant.graphs)}, "
                    f"the model has {sorted(self.graphs)}"
                )
        return self

    def path_of(self, folder: Path, graph: str, precision: Precision = "fp32") -> Path:
        """The file of ``graph`` at ``precision`` (which must be fp32 or a listed variant)."""
        if precision == "fp32":
            return Path(folder) / self.graphs[graph].file
        return Path(folder) / self.variants[precision].graphs[graph]

    def listed_file(self, folder: Path, name: str) -> Path:
        """``folder / name`` for a file the manifest lists with its sha256 (so load_manifest
        verified it); any other file would be loaded unchecked, and is an :class:`ArtifactError`."""
        if name not in self.files:
            raise ArtifactError(f"{folder}: {name!r} has no sha256 in the manifest's files")
        return Path(folder) / name

    @model_validator(mode="after")
    def _files_are_in_the_folder(self) -> Manifest:
        """Every file name is a plain name: no path may lead out of the model's folder."""
        for name in [*self.files, *self.graph_files()]:
            if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
                raise ValueError(f"{name!r} is not a file name of the model's folder")
        return self

    def graph_files(self) -> list[str]:
        """Every graph file the manifest names, variants included."""
        files = [g.file for g in self.graphs.values()]
        return files + [f for v in self.variants.values() for f in v.graphs.values()]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discover_models(model_dir: Path) -> tuple[str, ...]:
    """Names of the sub-folders of ``model_dir`` that hold a manifest, hidden ones aside (an
    export builds its new folder, and parks the one it replaces, under a hidden name)."""
    if not model_dir.is_dir():
        return ()
    folders = (p.parent.name for p in model_dir.glob(f"*/{MANIFEST_FILE}"))
    return tuple(sorted(name for name in folders if not name.startswith(".")))


def load_manifest(folder: Path, *, verify: bool = True, task: str | None = None) -> Manifest:
    """Read and validate ``folder/manifest.json``; with ``verify``, check every file's sha256;
    with ``task``, require a model of that task."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no manifest (is this a model folder?)") from None
    except ValidationError as exc:
        raise ArtifactError(f"{path}: invalid manifest: {exc}") from None
    if task is not None and manifest.task != task:
        raise ArtifactError(f"{folder} holds a {manifest.task!r} model, not a {task!r} model")
    if verify:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Raise :class:`ArtifactError` naming the first file that is missing or altered."""
    for file in manifest.graph_files():
        if file not in manifest.files:
            raise ArtifactError(f"{folder}: graph file {file!r} has no sha256 in the manifest")
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


def file_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of every file in ``folder`` but the manifest: a manifest's ``files``."""
    return {
        p.name: sha256_file(p)
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Fill in the sha256 of every file in ``folder`` (but the manifest) and write it."""
    folder = Path(folder)
    manifest = manifest.model_copy(update={"files": file_hashes(folder)})
    Manifest.model_validate(manifest.model_dump())
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path
