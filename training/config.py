"""Task configurations: dataclass defaults, a TOML file on top, dotted overrides on top of that.

The resolved configuration is saved in every run folder and in the exported manifest, so a
model can always be traced back to the exact settings that produced it.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
GLOVE_50D = "glove/glove.6B.50d.txt.gz"


@dataclass
class TrainerConfig:
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    patience: int = 3
    seed: int = 13
    threads: int = 2
    max_batches: int | None = None  # cap batches per epoch (dry runs)
    lr_decay: float = 0.5  # multiply the learning rate when dev stops improving
    keep_epochs: bool = False  # also save each epoch's weights (epoch-N.pt), e.g. to average them


@dataclass
class SentimentDataConfig:
    datasets_dir: str = str(DATASETS)
    use_sst: bool = True
    use_imdb: bool = True
    train_imdb: bool = True  # false: IMDB serves only as held-out dev data
    imdb_holdout: int = 2500
    holdout_seed: int = 1234
    max_train_tokens: int = 400  # reviews are truncated to this many tokens for training
    batch_tokens: int = 6000  # token budget of one training batch
    max_batch_size: int = 128
    limit_train: int | None = None  # use only the first N shuffled training examples
    limit_dev: int | None = None  # use only the first N examples of each dev set
    # Your own labelled texts (training.data.read_labeled_texts: TSV or JSON Lines), relative to
    # datasets_dir or absolute, with or instead of SST and IMDB: train_file is trained on,
    # dev_file is a dev set reported as dev_<name>_accuracy (the model is selected on the mean
    # of all dev sets' accuracies).
    train_file: str | None = None
    dev_file: str | None = None
    name: str = "own"


@dataclass
class SentimentModelConfig:
    cell: str = "lstm"
    embedding_dim: int = 50
    hidden_size: int = 150
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.5
    embedding_dropout: float = 0.3
    pooling: str = "max_mean"
    freeze_embeddings: bool = False  # keep the GloVe vectors as initialised


@dataclass
class SentimentVocabConfig:
    min_freq: int = 2
    max_size: int = 60000
    glove_fill: bool = True  # fill the remaining room with frequent GloVe words
    glove_path: str | None = GLOVE_50D  # relative to data.datasets_dir, or absolute; None: none


@dataclass
class SentimentLanguageModelConfig:
    """Pre-training of the classifier's embedding and RNN as a bidirectional language model on
    unlabelled text: the training reviews and sentences, never the dev texts. ``init_from``
    then starts a classifier from the pre-trained checkpoint."""

    enabled: bool = False  # true: this run pre-trains instead of training the classifier
    cutoffs: list[int] = field(default_factory=lambda: [500, 5000])  # adaptive softmax bands
    div_value: float = 4.0  # each band's projection is this much smaller than the previous
    window: int = 100  # texts are cut into pieces of at most this many tokens (shorter loops)


@dataclass
class SentimentConfig:
    task: str = "sentiment"
    data: SentimentDataConfig = field(default_factory=SentimentDataConfig)
    vocab: SentimentVocabConfig = field(default_factory=SentimentVocabConfig)
    model: SentimentModelConfig = field(default_factory=SentimentModelConfig)
    language_model: SentimentLanguageModelConfig = field(
        default_factory=SentimentLanguageModelConfig
    )
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    max_tokens: int = 800  # served: longer texts are truncated and flagged
    init_from: str | None = None  # start from this checkpoint's weights and vocabulary


@dataclass
class NerDataConfig:
    datasets_dir: str = str(DATASETS)
    train_file: str = "conll2003/train.txt"  # relative to datasets_dir, or absolute
    dev_file: str = "conll2003/valid.txt"  # model selection and early stopping only
    name: str = "conll2003"  # of the data set, in the manifest's training_data
    # The entity types, in the order of the model's outputs (O, then B-/I- of each type); None:
    # every type of the training file, sorted. configs/ner.toml pins CoNLL-2003's.
    entity_types: list[str] | None = None
    batch_size: int = 10  # sentences per training batch (grouped by similar length)
    limit_train: int | None = None  # use only the first N shuffled training sentences
    limit_dev: int | None = None  # use only the first N dev sentences


@dataclass
class NerVocabConfig:
    min_freq: int = 1  # training words (lower-cased) seen this often enter the vocabulary
    max_size: int = 100000  # with GloVe 50d: 20 MB of embeddings, the artifact stays < 25 MB
    glove_fill: bool = True  # fill the remaining room with frequent GloVe words
    glove_path: str | None = GLOVE_50D  # relative to data.datasets_dir, or absolute; None: none
    char_min_freq: int = 1  # training characters seen this often enter the character vocabulary


@dataclass
class NerModelConfig:
    word_dim: int = 50  # must match the GloVe file
    case_dim: int = 10
    char_dim: int = 25
    char_filters: int = 30
    char_width: int = 3
    char_dropout: float = 0.25  # on character embeddings, before the CNN
    embedding_dropout: float = 0.5  # on the word representation, before the LSTM
    hidden_size: int = 200  # per direction
    num_layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.5  # on the LSTM outputs
    freeze_embeddings: bool = False
    constrain_transitions: bool = True  # the CRF cannot produce invalid IOB2 (O -> I-X)


@dataclass
class NerConfig:
    task: str = "ner"
    data: NerDataConfig = field(default_factory=NerDataConfig)
    vocab: NerVocabConfig = field(default_factory=NerVocabConfig)
    model: NerModelConfig = field(default_factory=NerModelConfig)
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(epochs=40, lr=1e-3, clip_norm=5.0, patience=6)
    )
    max_tokens: int = 150  # served: longer sentences are split into windows of at most this
    max_word_chars: int = 30  # characters of a word fed to the character CNN


@dataclass
class TranslationDataConfig:
    datasets_dir: str = str(DATASETS)
    train_src: str = "multi30k/train.en"  # relative to datasets_dir, or absolute
    train_tgt: str = "multi30k/train.de"
    dev_src: str = "multi30k/val.en"  # model selection (dev BLEU) only
    dev_tgt: str = "multi30k/val.de"
    name: str = "multi30k"  # of the data set, in the manifest's training_data
    batch_tokens: int = 2500  # padded (source or target) subword budget of a training batch
    max_batch_size: int = 128
    max_train_tokens: int = 80  # longer training pairs (in subwords) are dropped
    limit_train: int | None = None  # use only the first N shuffled training pairs
    limit_dev: int | None = None  # use only the first N dev pairs


@dataclass
class TranslationVocabConfig:
    source_size: int = 8000  # sentencepiece vocabulary per language (trained on train only)
    target_size: int = 8000
    model_type: str = "unigram"


@dataclass
class TranslationModelConfig:
    cell: str = "gru"
    embedding_dim: int = 256
    encoder_hidden: int = 256  # per direction
    decoder_hidden: int = 384
    dropout: float = 0.3
    embedding_dropout: float = 0.1
    tie_embeddings: bool = True  # output layer = target embeddings (after a projection)


@dataclass
class TranslationDecodingConfig:
    beam_size: int = 5
    length_penalty: float = 1.0  # rank finished beams by sum log p / length ** this
    max_length_a: float = 1.5  # generate at most a * src_len + b subwords
    max_length_b: int = 10
    max_length: int = 200  # hard cap


@dataclass
class TranslationConfig:
    task: str = "translation"
    data: TranslationDataConfig = field(default_factory=TranslationDataConfig)
    vocab: TranslationVocabConfig = field(default_factory=TranslationVocabConfig)
    model: TranslationModelConfig = field(default_factory=TranslationModelConfig)
    decoding: TranslationDecodingConfig = field(default_factory=TranslationDecodingConfig)
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(epochs=25, lr=1e-3, clip_norm=1.0, patience=5)
    )
    label_smoothing: float = 0.1
    max_source_tokens: int = 200  # served: longer sources are cut to this many subwords
    init_from: str | None = None  # start from this checkpoint's weights and subword models


CONFIGS: dict[str, type] = {
    "sentiment": SentimentConfig,
    "ner": NerConfig,
    "translation": TranslationConfig,
}


def _set_dotted(obj: Any, dotted: str, raw: str) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        obj = getattr(obj, name)
    if not dataclasses.is_dataclass(obj) or leaf not in {f.name for f in dataclasses.fields(obj)}:
        raise KeyError(f"unknown config key {dotted!r}")
    current = getattr(obj, leaf)
    setattr(obj, leaf, _parse_value(raw, current))


def _parse_value(raw: str, current: Any) -> Any:
    if isinstance(current, bool):
        if raw.lower() not in {"true", "false", "1", "0"}:
            raise ValueError(f"expected true/false, got {raw!r}")
        return raw.lower() in {"true", "1"}
    if raw.lower() in {"none", "null"}:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    return value


def _merge(obj: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _merge(getattr(obj, key), value)
        else:
            _set_dotted(obj, key, json.dumps(value))


def load_config(task: str, path: Path | None = None, overrides: list[str] = ()) -> Any:
    """Defaults for ``task``, updated by the TOML file at ``path``, then ``key=value`` overrides."""
    config = CONFIGS[task]()
    if path is not None:
        _merge(config, tomllib.loads(Path(path).read_text("utf-8")))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not of the form key=value")
        _set_dotted(config, key.strip(), raw.strip())
    return config


def from_dict(task: str, values: dict[str, Any]) -> Any:
    """Rebuild a saved configuration (for instance the one stored in a checkpoint)."""
    config = CONFIGS[task]()
    _merge(config, values)
    return config


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def with_datasets_dir(config: Any, datasets_dir: Path | None) -> Any:
    """``config``, reading its data sets from ``datasets_dir`` when given: a checkpoint or a
    manifest records the absolute path of the machine it was trained on."""
    if datasets_dir is not None:
        config.data.datasets_dir = str(datasets_dir)
    return config


def config_differences(
    saved: dict[str, Any], current: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two configurations in :func:`to_dict` form (a
    key missing on one side counts, as ``None``), mapped to ``(saved, current)``."""
    differences: dict[str, tuple[Any, Any]] = {}
    for key in sorted(saved.keys() | current.keys()):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences |= config_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences[f"{prefix}{key}"] = (old, new)
    return differences
