"""The README's model table, rendered from the exported manifests (so it cannot drift)."""

from __future__ import annotations

import re
from pathlib import Path

from service.runtime.manifest import ArtifactError, load_manifest
from service.text.constants import MANIFEST_FILE

# Terms of the data each model was trained on (from ../shared/datasets/README.md).
DATA_TERMS = {
    "sst2_glue": "SST: research data set, cite Socher et al. 2013",
    "imdb": "IMDB: cite Maas et al. 2011",
    "conll2003": "CoNLL-2003: Reuters RCV1, research use only, not redistributed",
    "glove": "GloVe: PDDL 1.0",
    "multi30k": "Multi30k: non-commercial research and education only, not redistributed",
}
# The headline dev metrics, named after the data set they were measured on (a model trained on
# other data, e.g. an NER model on data.name=news, shows "news valid entity F1").
METRIC_NAMES = {
    "dev_sst2_accuracy": "SST-2 dev accuracy",
    "dev_imdb_accuracy": "IMDB held-out accuracy",
    "dev_f1": "{data} entity F1",
    "dev_bleu_beam": "{data} sacreBLEU, beam",
    "dev_bleu_greedy": "{data} sacreBLEU, greedy",
}
DEV_SPLITS = {"dev", "valid", "val"}
DATA_NAMES = {"conll2003 valid": "CoNLL-2003 valid", "multi30k val": "Multi30k val"}
_OWN_ACCURACY = re.compile(r"dev_([a-z][a-z0-9_]*)_accuracy")


def _size_mb(folder: Path, manifest) -> str:
    """The fp32 artifact's size, and apart from it each variant's graphs (served instead of
    the fp32 graphs, never with them)."""
    variant_files = {f for v in manifest.variants.values() for f in v.graphs.values()}
    files = [p for p in folder.iterdir() if p.is_file() and p.name not in variant_files]
    size = f"{sum(p.stat().st_size for p in files) / 1e6:.1f} MB"
    for name, variant in manifest.variants.items():
        graphs = sum((folder / f).stat().st_size for f in variant.graphs.values()) / 1e6
        size += f"<br>{name} graphs {graphs:.1f} MB"
    return size


def _data(manifest) -> str:
    splits = [f"{d.name} {d.split} ({d.examples:,})" for d in manifest.training_data]
    return "; ".join(splits)


def _dev_data(manifest) -> str:
    """The name of the (last) dev set a model was selected on, as the table writes it."""
    dev = [f"{d.name} {d.split}" for d in manifest.training_data if d.split in DEV_SPLITS]
    return DATA_NAMES.get(dev[-1], dev[-1]) if dev else "dev"


def _metric_name(key: str, data: str) -> str | None:
    """How the table names a dev metric measured on ``data``; None for the ones it leaves out."""
    if key in METRIC_NAMES:
        return METRIC_NAMES[key].format(data=data)
    own = _OWN_ACCURACY.fullmatch(key)
    if own is not None and own.group(1) != "mean":
        return f"{own.group(1)} dev accuracy"  # a sentiment model's own dev set
    return None


def _metrics(manifest) -> str:
    data = _dev_data(manifest)
    shown = [
        f"{name} **{value:.2f}**"
        for key, value in manifest.metrics.items()
        if (name := _metric_name(key, data)) is not None
    ]
    for name, variant in manifest.variants.items():
        values = [f"{v:.2f}" for k, v in variant.metrics.items() if _metric_name(k, data)]
        speed = ", ".join(f"{r:.2f}× at {b.replace('_', ' ')}" for b, r in variant.speedup.items())
        shown.append(f"{name}: {' / '.join(values)} ({speed})")
    return "<br>".join(shown)


def _terms(manifest) -> str:
    names = [d.name for d in manifest.training_data]
    vocab = (manifest.training_config or {}).get("vocab", {})
    if manifest.task != "translation" and vocab.get("glove_path", "") is not None:
        names.append("glove")  # the sentiment and NER models start from GloVe (by default)
    return "; ".join(dict.fromkeys(DATA_TERMS[n] for n in names if n in DATA_TERMS))


def model_table(models_dir: Path) -> str:
    """A markdown table: one row per model folder with a manifest."""
    header = ["model", "version", "trained and selected on", "dev metrics (ONNX Runtime)"]
    header += ["size", "data terms"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    folders = sorted(
        p.parent
        for p in Path(models_dir).glob(f"*/{MANIFEST_FILE}")
        if not p.parent.name.startswith(".")  # an export's work folders (training.export)
    )
    if not folders:
        raise ArtifactError(f"{models_dir}: no model folders (no */{MANIFEST_FILE})")
    for folder in folders:
        manifest = load_manifest(folder)
        cells = [
            f"`{manifest.name}`",
            manifest.version,
            _data(manifest),
            _metrics(manifest),
            _size_mb(folder, manifest),
            _terms(manifest),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
