"""The README's model table and each model folder's ``MODEL_CARD.md``, rendered from the
exported manifests (so they cannot drift from what was measured)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from service.runtime.manifest import ArtifactError, Manifest, load_manifest, write_manifest
from service.text.constants import MANIFEST_FILE

CARD_FILE = "MODEL_CARD.md"

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
    dev = [d for d in manifest.training_data if d.split in DEV_SPLITS]
    if not dev:
        return "dev"
    name = f"{dev[-1].name} {dev[-1].split}"
    return DATA_NAMES.get(name, name) if _is_standard(dev[-1]) else name


def _metric_name(key: str, data: str) -> str | None:
    """How the table names a dev metric measured on ``data``; None for the ones it leaves out."""
    if key in METRIC_NAMES:
        return METRIC_NAMES[key].format(data=data)
    own = _OWN_ACCURACY.fullmatch(key)
    if own is not None and own.group(1) != "mean":
        return f"{own.group(1)} dev accuracy"  # a sentiment model's own dev set
    return None


def _speedups(variant) -> str:
    """A variant's measured speed-ups over fp32: "3.17× at batch 1, 2.26× at batch 32"."""
    return ", ".join(f"{r:.2f}× at {b.replace('_', ' ')}" for b, r in variant.speedup.items())


def _labels(manifest) -> str:
    return " or ".join(f"`{label}`" for label in manifest.labels)


def _metrics(manifest) -> str:
    data = _dev_data(manifest)
    shown = [
        f"{name} **{value:.2f}**"
        for key, value in manifest.metrics.items()
        if (name := _metric_name(key, data)) is not None
    ]
    for name, variant in manifest.variants.items():
        values = [f"{v:.2f}" for k, v in variant.metrics.items() if _metric_name(k, data)]
        speed = _speedups(variant)
        shown.append(f"{name}: {' / '.join(values)} ({speed})")
    return "<br>".join(shown)


# Where each standard data set lives under ../shared/datasets: a data set is taken for a standard
# one only when both its name and its files say so (``data.name`` keeps its default when a user
# trains on files of their own and forgets to rename it).
STANDARD_SOURCES = {
    "sst2_glue": "sst/",
    "imdb": "imdb/",
    "conll2003": "conll2003/",
    "multi30k": "multi30k/",
}


def _is_standard(data) -> bool:
    return data.name in STANDARD_SOURCES and data.source.startswith(STANDARD_SOURCES[data.name])


def standard_names(manifest) -> list[str]:
    """The standard data sets among those a model was trained and selected on."""
    return list(dict.fromkeys(d.name for d in manifest.training_data if _is_standard(d)))


def _terms(manifest) -> str:
    names = standard_names(manifest)
    vocab = (manifest.training_config or {}).get("vocab") or {}
    if manifest.task != "translation" and vocab.get("glove_path", "") is not None:
        names.append("glove")  # the sentiment and NER models start from GloVe (by default)
    return "; ".join(dict.fromkeys(DATA_TERMS[n] for n in names if n in DATA_TERMS))


def model_table(models_dir: Path) -> str:
    """A markdown table: one row per model folder with a manifest."""
    header = ["model", "version", "trained and selected on", "dev metrics (ONNX Runtime)"]
    header += ["size", "data terms"]
    rows = [_row(header), _row(["---"] * len(header))]
    for folder in _model_folders(models_dir):
        manifest = load_manifest(folder)
        cells = [
            f"`{manifest.name}`",
            manifest.version,
            _data(manifest),
            _metrics(manifest),
            _size_mb(folder, manifest),
            _terms(manifest),
        ]
        rows.append(_row(cells))
    return "\n".join(rows) + "\n"


def _model_folders(models_dir: Path) -> list[Path]:
    folders = sorted(
        p.parent
        for p in Path(models_dir).glob(f"*/{MANIFEST_FILE}")
        if not p.parent.name.startswith(".")  # an export's work folders (training.export)
    )
    if not folders:
        raise ArtifactError(f"{models_dir}: no model folders (no */{MANIFEST_FILE})")
    return folders


# The metrics that only the cards show.
CARD_METRIC_NAMES = {
    "dev_mean_accuracy": "mean of the dev accuracies, which selected the epoch",
    "dev_precision": "{data} entity precision",
    "dev_recall": "{data} entity recall",
    "dev_chrf_greedy": "{data} chrF, greedy",
    "dev_chrf_beam": "{data} chrF, beam",
}
_F1_PER_TYPE = re.compile(r"dev_f1_(\w+)")

# What each task's model is, and how it is built.
TASKS = {
    "sentiment": {
        "what": "Classifies text as {labels}, from a short sentence to a whole review.",
        "architecture": "Word embeddings (GloVe-initialised unless `vocab.glove_path` is unset) "
        "→ recurrent layer over packed sequences (no padding is read) → pooling over time → "
        "linear → softmax",
    },
    "ner": {
        "what": "Finds named entities{entity_types} in text, with their exact character offsets.",
        "architecture": "Word embeddings (GloVe-initialised unless `vocab.glove_path` is unset), "
        "a casing feature and a character CNN → recurrent layer over packed sentences → linear "
        "emission scores → CRF, decoded by Viterbi in the service (its transition scores are "
        "`crf.json`)",
    },
    "translation": {
        "what": "Translates text from the language of its training data's source side into "
        "that of its target side, by greedy or beam search over a one-step decoder.",
        "architecture": "Subword embeddings (SentencePiece models `source.model`, "
        "`target.model`) → recurrent encoder → recurrent decoder with multiplicative attention "
        "and input feeding (Luong et al. 2015), run one step at a time by the service's search",
    },
}
# What the standard data sets hold, so a card says where its model is on home ground.
DATA_DOMAINS = {
    "sst2_glue": "sentences and phrases of English film reviews from Rotten Tomatoes (Stanford "
    "Sentiment Treebank, as in GLUE SST-2)",
    "imdb": "whole English film reviews from IMDb (Large Movie Review Dataset)",
    "conll2003": "English Reuters news stories from 1996 (CoNLL-2003)",
    "multi30k": "short English descriptions of photographs and their German translations "
    "(Multi30k): mostly one simple sentence about people, animals and scenes",
}
# Limits that come from a standard data set itself.
DATA_LIMITS = {
    "multi30k": "Multi30k's English side is plain ASCII, so every other source character "
    "(accented letters such as é or ü, currency signs, other scripts) is read as unknown.",
}


def card(manifest: Manifest, files: dict[str, int]) -> str:
    """``MODEL_CARD.md`` for one model: what it does, on what data, how well (the dev metrics
    measured at export), its limits, and how it is built. ``files``: the size of each file in
    the folder (but the card and the manifest)."""
    task = TASKS[manifest.task]
    types = _entity_types(manifest.labels)
    values = {
        "labels": _labels(manifest),
        "entity_types": f" ({', '.join(types)})" if types else "",
    }
    known = [n for n in standard_names(manifest) if n in DATA_DOMAINS]
    dev_data = _dev_data(manifest)
    lines = [
        f"# Model card: `{manifest.name}` {manifest.version}",
        "",
        f"Written from `{MANIFEST_FILE}` by `python -m training export`, `quantize` and "
        "`model-card --write`; its metrics are the ones the export and the quantization "
        "measured.",
        "",
        "## What it does",
        "",
        task["what"].format(**values),
        "Served by the Open Inference Protocol under its folder's name, and at "
        f"`/v1/{_endpoint(manifest.task)}` when it is the first {manifest.task} model there by "
        "folder name.",
        "",
        "## Data",
        "",
        "| data set | split | examples | read from |",
        "|---|---|---|---|",
        *(
            f"| {d.name} | {d.split} | {d.examples:,} | `{d.source}` |"
            for d in manifest.training_data
        ),
        "",
        *(f"- **{n}**: {DATA_DOMAINS[n]}." for n in known),
        *([""] if known else []),
        f"Terms of the data: {_terms(manifest) or 'those of your own data'}.",
        "",
        "## Dev metrics (ONNX Runtime)",
        "",
        "Measured on the dev data above, which also chose the training epoch: for new text of "
        "the same kind, expect somewhat less.",
        "",
        _row(["metric", "fp32", *manifest.variants]),
        _row(["---"] * (2 + len(manifest.variants))),
        *(
            _row(
                [
                    _metric_label(key, dev_data),
                    _value(value),
                    *(_value(v.metrics.get(key)) for v in manifest.variants.values()),
                ]
            )
            for key, value in manifest.metrics.items()
        ),
        "",
        *_variant_lines(manifest),
        "## Limits",
        "",
        *(f"- {limit}" for limit in _task_limits(manifest, types)),
        *(f"- {DATA_LIMITS[n]}" for n in known if n in DATA_LIMITS),
        "- "
        + (
            "Trained on " + " and ".join(DATA_DOMAINS[n].split(" (")[0] for n in known) + ": "
            "other kinds of text were not measured here and may fare worse."
            if known
            else "Quality outside the data above was not measured."
        ),
        "",
        "## How it is built",
        "",
        f"{task['architecture']}.",
        "",
        "| setting | value |",
        "|---|---|",
        *(
            f"| `model.{key}` | {_value(value)} |"
            for key, value in (manifest.training_config.get("model") or {}).items()
        ),
        "",
        "The training configuration (of the last stage, for a model trained from another's "
        f"checkpoint: see `init_from`) is `training_config` in `{MANIFEST_FILE}`; the "
        "README's *Retraining and re-exporting* section shows how to train and export again.",
        "",
        "## Files",
        "",
        "| file | size |",
        "|---|---|",
        *(f"| `{name}` | {_size(size)} |" for name, size in sorted(files.items())),
        "",
        f"ONNX opset {manifest.opset}; exported {manifest.created_at}"
        + "".join(f"; {name} {version}" for name, version in manifest.framework.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def _task_limits(manifest: Manifest, types: list[str]) -> list[str]:
    """What the service does with text beyond the model's limits, from its preprocessing."""
    p = manifest.preprocessing
    if manifest.task == "sentiment":
        limits = [
            f"Every text gets {_labels(manifest)}: there is no neutral class, and a neutral or "
            "off-topic text can still get a confident score."
        ]
        if "max_tokens" in p:
            n = p["max_tokens"]
            limits.append(
                f"Texts longer than {n} tokens are cut to their first {n}; `/v1/sentiment` "
                "flags them `truncated`, the Open Inference Protocol does not."
            )
        return limits
    if manifest.task == "ner":
        limits = [f"Only these types are tagged: {', '.join(types)}."] if types else []
        if "max_tokens" in p:
            limits.append(
                "Text sent as `texts` is split into sentences and tokens by the service's own "
                f"rules; a sentence (or a `tokens` list) longer than {p['max_tokens']} tokens is "
                f"tagged in overlapping windows of at most {p['max_tokens']}."
            )
        if p.get("truecaser"):
            limits.append(
                "The training news is cased: a sentence in small letters (but for acronyms and a "
                "later I) is read with each word in its most frequent case inside the training "
                "sentences of ordinary case (the artifact's truecaser); answers keep the input's "
                "own tokens and offsets. Sentences in capitals or title case are read as "
                "written. The truecaser knows words, and the pairs of words the training data "
                "has at least twice (new york, white house), no more: a name the training data "
                "never had stays in small letters, and is often missed; a common word the "
                "training data mostly has inside names (park, as in Hyde Park) gets a capital, "
                "and may be tagged."
            )
        return limits
    limits = [
        "The service splits a text into sentences by its own rules and translates each on its "
        "own (the limits below are per sentence), joining the translations with the "
        "whitespace between the sentences."
    ]
    if p.get("truecaser"):
        limits.append(
            "The model learned from sentence case only: a sentence in capitals, in title or "
            "headline case or in small letters is read in sentence case, each word in its most "
            "frequent case inside the training sentences of ordinary case (the artifact's "
            "truecaser), and one in capitals is translated into capitals; a short title that "
            "could be a sentence of names is read as written. The truecaser knows words, and "
            "the pairs of words the training sentences have at least twice (New York), no "
            'more: a word they do not have with a capital loses it ("UK" in "THE USA AND THE '
            'UK").'
        )
    if "max_source_tokens" in p:
        n = p["max_source_tokens"] - 1  # then the end-of-sentence marker
        limits.append(
            f"Source sentences longer than {n} subwords are cut to their first {n}; "
            "`/v1/translate` flags their text `truncated`, the Open Inference Protocol does not."
        )
    if {"max_length_a", "max_length_b", "max_length"} <= p.keys():
        limits.append(
            f"A sentence's translation has at most {p['max_length_a']:g} × n + "
            f"{p['max_length_b']:g} subwords (n: the source sentence's, with its end marker), "
            f"and never more than {p['max_length']}; a longer one is cut without notice."
        )
    limits.append(
        "The subword vocabularies were learned from the training text alone: a source "
        "character that never occurs there is read as unknown."
    )
    return limits


def folder_card(folder: Path, manifest: Manifest) -> str:
    """The card of the model in ``folder``, as its files are now."""
    files = {
        p.name: p.stat().st_size
        for p in Path(folder).iterdir()
        if p.is_file() and p.name not in (CARD_FILE, MANIFEST_FILE)
    }
    return card(manifest, files)


def seal(folder: Path, manifest: Manifest) -> Path:
    """Write the model card, then the manifest with the sha256 of every file in ``folder``,
    card included. Everything that can fail on the content (rendering, validation) runs before
    either file is written, and the card is replaced in one rename, so a failure leaves the
    folder as it was."""
    folder = Path(folder)
    Manifest.model_validate(manifest.model_dump())
    text = folder_card(folder, manifest)
    staged = folder / f".{CARD_FILE}.new"
    staged.write_text(text, "utf-8")
    os.replace(staged, folder / CARD_FILE)
    return write_manifest(folder, manifest)


def write_cards(models_dir: Path) -> list[Path]:
    """Write the card of every model folder in ``models_dir`` again, and list it in the folder's
    manifest. Every folder is checked first, and none is written unless all pass: each file
    must match its sha256, and the folder may hold no file its manifest does not list (the card
    aside), since sealing would vouch for it."""
    folders = _model_folders(models_dir)
    manifests = []
    for folder in folders:
        manifest = load_manifest(folder)
        unlisted = sorted(
            p.name
            for p in folder.iterdir()
            if p.is_file() and p.name not in {*manifest.files, CARD_FILE, MANIFEST_FILE}
        )
        if unlisted:
            raise ArtifactError(
                f"{folder}: {', '.join(unlisted)} not listed in {MANIFEST_FILE}; remove "
                "them (or export the model again) before writing its card"
            )
        manifests.append(manifest)
    for folder, manifest in zip(folders, manifests, strict=True):
        seal(folder, manifest)
    return [folder / CARD_FILE for folder in folders]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _endpoint(task: str) -> str:
    return {"translation": "translate"}.get(task, task)


def _entity_types(labels: list[str]) -> list[str]:
    return list(dict.fromkeys(label[2:] for label in labels if label[:2] in ("B-", "I-")))


def _metric_label(key: str, data: str) -> str:
    """A card names every metric (the README's table shows only the headline ones)."""
    name = _metric_name(key, data)
    per_type = _F1_PER_TYPE.fullmatch(key)
    if name is None and key in CARD_METRIC_NAMES:
        name = CARD_METRIC_NAMES[key].format(data=data)
    elif name is None and per_type is not None:
        name = f"{data} F1, {per_type.group(1)} only"
    return f"{name} (`{key}`)" if name else f"`{key}`"


def _variant_lines(manifest: Manifest) -> list[str]:
    lines = []
    for name, variant in manifest.variants.items():
        speed = _speedups(variant)
        verdict = "met" if variant.qualified else "did **not** meet"
        lines += [
            f"`{name}` graphs ({', '.join(f'`{f}`' for f in variant.graphs.values())}), served "
            f"with `MODEL_PRECISION={name}`: speed-up over fp32 on one thread {speed}; they "
            f"{verdict} the quantization criteria when verified.",
            "",
        ]
    return lines


def _value(value: Any) -> str:
    """A table cell: numbers as they are (floats to two places), anything else as JSON code."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"`{json.dumps(value)}`"


def _size(size: int) -> str:
    if size >= 100_000:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e3:.1f} kB" if size >= 1000 else f"{size} bytes"
