"""Command line: ``python -m training {train,export,quantize,evaluate} TASK ...``,
``average``, ``plot-attention``, ``model-card``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from service.runtime.manifest import ArtifactError
from training.casing import SOURCE_CASES
from training.config import (
    CONFIGS,
    config_differences,
    from_dict,
    load_config,
    to_dict,
    with_datasets_dir,
)
from training.errors import CheckpointError, ConfigError, DataError, UsageError

log = logging.getLogger("training")

RUN_CONFIG = "config.json"  # the run folder's resolved configuration
# May differ from it on --resume: how long to go on, and how many cores to use for it.
RESUMABLE_CHANGES = ("trainer.epochs", "trainer.patience", "trainer.threads")

DRY_RUN_OVERRIDES = [
    "trainer.epochs=1",
    "trainer.max_batches=3",
    "data.limit_train=2000",
    "data.limit_dev=64",
]
DRY_RUN_VOCAB = {
    "sentiment": ["vocab.max_size=5000"],
    "ner": ["vocab.max_size=5000"],
    "translation": ["vocab.source_size=1000", "vocab.target_size=1000"],
}


def _positive(value: str) -> int:
    """An option's whole number of at least 1 (argparse names the option otherwise)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def _setup_logging(log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _task_module(task: str):
    from training.tasks import ner, sentiment, translation

    return {"sentiment": sentiment, "ner": ner, "translation": translation}[task]


def cmd_train(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.dry_run:
        overrides = DRY_RUN_OVERRIDES + DRY_RUN_VOCAB[args.task] + overrides
    config = load_config(args.task, args.config, overrides)
    if args.print_config:
        print(json.dumps(to_dict(config), indent=2))
        return 0
    if args.resume:
        _check_resumable(args.run_dir, config)
    run_dir = Path(args.run_dir or f"runs/{args.task}-{time.strftime('%Y%m%d-%H%M%S')}")
    if not args.resume:
        _check_new(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _setup_logging(run_dir / "train.log")
    (run_dir / RUN_CONFIG).write_text(json.dumps(to_dict(config), indent=2) + "\n", "utf-8")
    log.info("run folder %s", run_dir)
    best = _task_module(args.task).train(config, run_dir, resume=args.resume)
    log.info("best epoch: %s", json.dumps(best))
    print(json.dumps({"run_dir": str(run_dir), "best": best}, indent=2))
    return 0


def _comparable(config: Any) -> dict[str, Any]:
    """``config`` as config.json holds it, GloVe's path resolved against the datasets folder
    (runs before ``vocab.glove_path`` became relative to it saved it absolute). A run's saved
    config goes through ``from_dict`` first, so settings added since it started read as their
    defaults."""
    from training.embeddings import glove_file

    values = json.loads(json.dumps(to_dict(config)))
    glove = getattr(getattr(config, "vocab", None), "glove_path", None)
    if glove is not None:
        path = glove_file(config.data.datasets_dir, glove, must_exist=False)
        values["vocab"]["glove_path"] = str(path)
    return values


def _check_new(run_dir: Path) -> None:
    """Refuse to start a new run over a run's checkpoints (a stray --dry-run would replace a
    trained model, and its config.json would no longer describe the checkpoints)."""
    from training.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT

    found = [name for name in (LAST_CHECKPOINT, BEST_CHECKPOINT) if (run_dir / name).is_file()]
    if found:
        raise UsageError(
            f"{run_dir} holds a run ({', '.join(found)}): continue it with --resume, or start "
            "the new one in another --run-dir"
        )


def _check_resumable(run_dir: str | None, config: Any) -> None:
    """Exit with the reason unless ``run_dir`` holds a run to continue, trained with ``config``
    (but for the settings that only say how long to go on)."""
    from training.trainer import LAST_CHECKPOINT

    if run_dir is None:
        raise UsageError("--resume needs --run-dir: the folder of the run to continue")
    last, saved = Path(run_dir) / LAST_CHECKPOINT, Path(run_dir) / RUN_CONFIG
    for path in (last, saved):
        if not path.is_file():
            raise UsageError(
                f"--resume: {path} does not exist, so there is no run to continue "
                "(leave out --resume to start a new one)"
            )
    try:
        run_config = from_dict(config.task, json.loads(saved.read_text("utf-8")))
    except ConfigError as exc:
        raise ConfigError(f"--resume: {saved}: {exc}") from None
    differences = config_differences(_comparable(run_config), _comparable(config))
    differing = {k: v for k, v in differences.items() if k not in RESUMABLE_CHANGES}
    if differing:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in differing.items())
        raise UsageError(
            f"--resume: the configuration given differs from the run's {saved} in {listed}. "
            f"Only {', '.join(RESUMABLE_CHANGES)} may change on resume: give the run's "
            "settings again, or start a new run folder."
        )


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint to ``--out``, verified on the dev set (read from ``--datasets-dir``
    when given, else from where the checkpoint was trained); the folder there is replaced only
    once every check of the task's ``build_artifact`` has passed."""
    from training.export import write_artifact

    _setup_logging()
    task = _task_module(args.task)
    model, state = task.load_checkpoint(Path(args.checkpoint))
    datasets_dir = Path(args.datasets_dir) if args.datasets_dir else None
    config = with_datasets_dir(from_dict(args.task, state["config"]), datasets_dir)
    manifest = write_artifact(
        Path(args.out),
        lambda folder: task.build_artifact(folder, model, state, config, args.version),
    )
    print(manifest.read_text("utf-8"))
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """Exit 0 when the int8 variant was recorded, 1 (with the numbers) when it was rejected."""
    from training.quantize import QuantizationRejected, Timing, quantize_model

    _setup_logging()
    model_dir = Path(args.model_dir or f"exported_models/{args.task}")
    try:
        report = quantize_model(
            model_dir,
            task=args.task,
            datasets_dir=Path(args.datasets_dir) if args.datasets_dir else None,
            force=args.force,
            timing=Timing(texts=args.speed_texts, repeats=args.repeats),
        )
    except QuantizationRejected as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return 1
    verdict = "qualifies" if report.qualified else "DOES NOT QUALIFY (recorded with --force)"
    print(f"int8 variant of {model_dir} {verdict}; recorded in the manifest:\n{report.summary()}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _setup_logging()
    if args.as_text and args.task != "ner":
        raise UsageError("--as-text is for ner")
    if args.source_case and args.task == "sentiment":
        raise UsageError("--source-case is for ner and translation")
    model_dir = Path(args.model or f"exported_models/{args.task}")
    if args.dev:
        return _evaluate_sentiment_dev(args, model_dir)
    if args.task == "translation":
        return _evaluate_translation(args, model_dir)
    if args.data is None:
        raise UsageError(f"evaluate {args.task} needs --data")
    options = {"as_text": True} if args.as_text else {}
    if args.source_case:
        options["source_case"] = args.source_case
    report, metrics = _task_module(args.task).evaluate_file(
        model_dir, Path(args.data), threads=args.threads, **options
    )
    case = f" (source case: {args.source_case})" if args.source_case else ""
    print(f"{args.data} with {model_dir}{case}:\n{report}")
    if args.task == "sentiment":
        print(f"overall: accuracy {metrics['accuracy']:.2f}")
    else:
        print(
            f"overall: precision {metrics['precision']:.2f} recall {metrics['recall']:.2f} "
            f"F1 {metrics['f1']:.2f}"
        )
    return 0


def _evaluate_sentiment_dev(args: argparse.Namespace, model_dir: Path) -> int:
    from training.tasks.sentiment import evaluate_dev

    if args.task != "sentiment":
        raise UsageError(f"--dev is for sentiment; give {args.task}'s dev file with --data")
    if args.data is not None:
        raise UsageError("give --dev or --data, not both")
    datasets_dir = Path(args.datasets_dir) if args.datasets_dir else None
    for name, (report, metrics) in evaluate_dev(model_dir, args.threads, datasets_dir).items():
        print(f"{name} dev set with {model_dir}:\n{report}")
        print(f"{name}: accuracy {metrics['accuracy']:.2f}\n")
    return 0


def _evaluate_translation(args: argparse.Namespace, model_dir: Path) -> int:
    from training.tasks.translation import evaluate_files

    if args.src is None or args.ref is None:
        raise UsageError("evaluate translation needs --src and --ref")
    report, _ = evaluate_files(
        model_dir,
        Path(args.src),
        Path(args.ref),
        beam_size=args.beam_size,
        length_penalty=args.length_penalty,
        threads=args.threads,
        source_case=args.source_case,
    )
    settings = f"beam size {args.beam_size or 'default'}"
    if args.length_penalty is not None:
        settings += f", length penalty {args.length_penalty:g}"
    if args.source_case is not None:
        settings += f", source case: {args.source_case}, scored case-insensitively"
    print(f"{args.src} -> {args.ref} with {model_dir} ({settings}):")
    print(report)
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from training.averaging import write_average

    _setup_logging()
    out = write_average([Path(p) for p in args.checkpoints], Path(args.out))
    print(f"mean of {len(args.checkpoints)} checkpoints written to {out}")
    return 0


def cmd_plot_attention(args: argparse.Namespace) -> int:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from training.tasks.translation import plot_attention

    formats = sorted(FigureCanvasAgg.get_supported_filetypes())
    if Path(args.out).suffix.lower().lstrip(".") not in formats:
        print(
            f"error: --out {args.out}: name an image file ending in .png, or one of "
            f"{', '.join(formats)}",
            file=sys.stderr,
        )
        return 2
    _setup_logging()
    translation = plot_attention(
        Path(args.model), args.text, Path(args.out), beam_size=args.beam_size, threads=args.threads
    )
    print(f"{translation}\nattention heatmap written to {args.out}")
    return 0


def cmd_model_card(args: argparse.Namespace) -> int:
    from training.model_card import model_table, write_cards

    if args.write:
        for path in write_cards(Path(args.models)):
            print(f"wrote {path}")
        return 0
    print(model_table(Path(args.models)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description="Train, export and evaluate the service's models."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model; writes a run folder")
    train.add_argument("task", choices=sorted(CONFIGS))
    train.add_argument("--config", type=Path, help="TOML file with settings (see configs/)")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set model.hidden_size=200 (repeatable)",
    )
    train.add_argument("--run-dir", help="run folder (default runs/<task>-<timestamp>)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN_DIR from its last.pt, with its settings (only "
        "trainer.epochs, trainer.patience and trainer.threads may change)",
    )
    train.add_argument("--dry-run", action="store_true", help="a few batches on a small subset")
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the task's settings (defaults, then --config, then --set) as JSON, every "
        "key --set accepts, and exit without training",
    )
    train.set_defaults(func=cmd_train)

    export = commands.add_parser("export", help="export a checkpoint to ONNX and verify it")
    export.add_argument("task", choices=sorted(CONFIGS))
    export.add_argument("--checkpoint", required=True, help="a run folder's best.pt")
    export.add_argument(
        "--out",
        required=True,
        help="the model's artifact folder, e.g. exported_models/sentiment: replaced as a whole "
        "once the new model is verified (a non-empty folder without a manifest.json is refused)",
    )
    export.add_argument("--version", default="1.0.0", help="model version recorded in the manifest")
    export.add_argument(
        "--datasets-dir",
        help="where the dev sets the export verifies on are (default: the checkpoint's "
        "training config)",
    )
    export.set_defaults(func=cmd_export)

    quantize = commands.add_parser(
        "quantize",
        help="write int8 graphs (ONNX Runtime dynamic quantization) and record them in the "
        "manifest if they are >= 1.3x faster and lose <= 0.5 dev points",
    )
    quantize.add_argument("task", choices=sorted(CONFIGS))
    quantize.add_argument("--model-dir", help="artifact folder (default exported_models/<task>)")
    quantize.add_argument(
        "--datasets-dir", help="where the dev sets are (default: the manifest's training config)"
    )
    quantize.add_argument(
        "--force",
        action="store_true",
        help="record the variant even if it misses the criteria (marked qualified: false)",
    )
    quantize.add_argument(
        "--speed-texts", type=_positive, default=512, help="dev texts timed per batch size"
    )
    quantize.add_argument("--repeats", type=_positive, default=7, help="interleaved timing repeats")
    quantize.set_defaults(func=cmd_quantize)

    evaluate = commands.add_parser(
        "evaluate", help="score an exported model on a labelled file, through the service's code"
    )
    evaluate.add_argument("task", choices=sorted(CONFIGS))
    evaluate.add_argument(
        "--data",
        help="ner: a CoNLL file (token ... tag per line; IOB2 tags); sentiment: labelled texts "
        "(TSV 'text<TAB>label' or .jsonl, labels 0/1, negative/positive or neg/pos)",
    )
    evaluate.add_argument("--src", help="translation: source sentences, one a line")
    evaluate.add_argument("--ref", help="translation: raw reference translations, one a line")
    evaluate.add_argument(
        "--beam-size", type=_positive, help="translation: 1 = greedy (default: the manifest's)"
    )
    evaluate.add_argument(
        "--length-penalty",
        type=float,
        help="translation: rank beams by sum log p / length ** this (default: the manifest's)",
    )
    evaluate.add_argument(
        "--source-case",
        choices=sorted(SOURCE_CASES),
        help="ner and translation: write every source sentence in capitals (upper), small "
        "letters (lower), title case (every word capitalized) or headline case (small words "
        "after the first kept small) first, as users may type it (as-written: unchanged); "
        "translations are then scored case-insensitively",
    )
    evaluate.add_argument(
        "--as-text",
        action="store_true",
        help="ner: send each sentence as text (its tokens joined by spaces), as POST /v1/ner "
        "texts: the service tokenizes it and splits it into sentences; entities count by "
        "exact character span and type",
    )
    evaluate.add_argument(
        "--dev",
        action="store_true",
        help="sentiment: score the dev sets of the model's own training config (SST-2 dev and "
        "the IMDB reviews held out with its seed), instead of --data",
    )
    evaluate.add_argument(
        "--datasets-dir", help="with --dev: where the data sets are (default: the manifest's)"
    )
    evaluate.add_argument("--model", help="artifact folder (default exported_models/<task>)")
    evaluate.add_argument(
        "--threads", type=_positive, default=1, help="ONNX Runtime intra-op threads"
    )
    evaluate.set_defaults(func=cmd_evaluate)

    average = commands.add_parser(
        "average", help="average the weights of checkpoints of one run (e.g. its last epochs)"
    )
    average.add_argument("checkpoints", nargs="+", help="checkpoint files of one run")
    average.add_argument("--out", required=True, help="where the averaged checkpoint goes")
    average.set_defaults(func=cmd_average)

    plot = commands.add_parser(
        "plot-attention", help="translate a text and draw its attention matrix as a heatmap"
    )
    plot.add_argument("--text", required=True, help="source sentence")
    plot.add_argument("--out", required=True, help="image file, e.g. attention.png")
    plot.add_argument("--model", default="exported_models/translation", help="artifact folder")
    plot.add_argument("--beam-size", type=_positive, help="1 = greedy (default: the manifest's)")
    plot.add_argument("--threads", type=_positive, default=1, help="ONNX Runtime intra-op threads")
    plot.set_defaults(func=cmd_plot_attention)

    card = commands.add_parser(
        "model-card",
        help="print the README's model table from the manifests, or write each model's card",
    )
    card.add_argument("--models", default="exported_models", help="folder of exported models")
    card.add_argument(
        "--write",
        action="store_true",
        help="write MODEL_CARD.md in each model folder again from its verified manifest (export "
        "and quantize write it themselves), and list it in the manifest",
    )
    card.set_defaults(func=cmd_model_card)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a problem its user can fix (a missing, unreadable or malformed data file,
    data settings that select nothing, a model folder that is not a valid artifact) is printed
    as ``error: ...`` with exit status 2. So is a file that is not a checkpoint of the task."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError, ArtifactError, CheckpointError, UsageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
