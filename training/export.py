"""ONNX export with named inputs/outputs and dynamic axes, and the artifact folder written all
at once: a failed export never touches the model that is there."""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import onnx
import torch
from torch import nn

from service.runtime.manifest import Manifest
from service.text.constants import MANIFEST_FILE, TRUECASE_FILE
from service.text.truecase import Truecaser
from training.model_card import seal

log = logging.getLogger(__name__)

OPSET = 17


def export_onnx(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int = OPSET,
) -> Path:
    """Export ``module`` in eval mode with the TorchScript-based exporter, then check the graph.

    ``dynamo=False``: the dynamo exporter cannot trace ``pack_padded_sequence``, while the
    TorchScript exporter turns a packed (bi)RNN into ONNX LSTM/GRU nodes with sequence lengths.
    """
    module.eval()
    path = Path(path)
    with torch.no_grad():
        torch.onnx.export(
            module,
            example_inputs,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def write_artifact(out_dir: Path, build: Callable[[Path], Manifest]) -> Path:
    """Replace the artifact folder ``out_dir`` by a verified one, or leave it untouched.

    ``build(folder)`` writes the artifact's files into ``folder``, a new folder next to
    ``out_dir``, verifies them (raising on any failure) and returns their manifest. Only then is
    the manifest written, with every file's sha256, and ``folder`` swapped in for ``out_dir``
    with renames, atomic on the one filesystem they share: the old folder is renamed aside, the
    new one renamed in, the old one removed (files of the old folder, an int8 variant say, go
    with it: they do not belong to the new model). If anything fails, ``out_dir`` is as it was
    and the new folder is removed. Returns the manifest's path in ``out_dir``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder")
    _require_model_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder = _sibling(out_dir, "new")
    folder.mkdir()
    try:
        seal(folder, build(folder))
        _swap_in(folder, out_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # left only by a failure
    log.info("artifact written to %s", out_dir)
    return out_dir / MANIFEST_FILE


def _require_model_folder(out_dir: Path) -> None:
    """Refuse to replace a folder that holds files but is no model's (no manifest), such as
    MODEL_DIR itself: everything in it would go."""
    if not out_dir.is_dir() or (out_dir / MANIFEST_FILE).is_file() or not any(out_dir.iterdir()):
        return
    message = (
        f"{out_dir} holds files but no {MANIFEST_FILE}, so it is not a model folder: an export "
        "replaces the whole folder it is given, and would delete them. Name a new or empty "
        "folder, or a model's own folder"
    )
    models = sorted(p.name for p in out_dir.iterdir() if (p / MANIFEST_FILE).is_file())
    if models:
        message += (
            f". It holds the model folders {', '.join(models)}: to replace one, name it "
            f"(e.g. {out_dir / models[0]})"
        )
    raise FileExistsError(message)


def _sibling(path: Path, role: str) -> Path:
    """A hidden, unused name next to ``path`` (same parent, hence same filesystem)."""
    return path.with_name(f".{path.name}.{role}-{secrets.token_hex(4)}")


def _swap_in(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is renamed aside first, put back if
    the swap fails, and removed once it succeeded."""
    if not target.exists():
        new.rename(target)
        return
    old = _sibling(target, "old")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    try:
        shutil.rmtree(old)
    except OSError as exc:  # the new model is in place: say so, but do not fail the export
        log.warning("could not remove the previous artifact %s: %s", old, exc)


def export_truecaser(
    state: dict,
    folder: Path,
    training_file: Path,
    sentences: Callable[[Path], Iterable[str]],
) -> bool:
    """Write the truecaser a checkpoint carries (``state["truecase"]``: fitted on its training
    sentences when it was trained) into ``folder`` as ``TRUECASE_FILE``; False when there is
    none. A checkpoint from before truecasers has none: one is fitted on ``training_file`` (read
    into sentences by ``sentences``) when that file is there, else the model reads every text
    as written (with a warning): export itself needs only the dev data."""
    if "truecase" in state:
        truecaser = Truecaser.from_tables(state["truecase"])
    elif training_file.is_file():
        log.info("the checkpoint has no truecaser: fitting one on %s", training_file)
        truecaser = Truecaser.fit(sentences(training_file))
    else:
        log.warning(
            "the checkpoint has no truecaser and %s is not there to fit one: the model will read "
            "texts as written, whatever their case",
            training_file,
        )
        return False
    truecaser.to_json(folder / TRUECASE_FILE)
    return True
