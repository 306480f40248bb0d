"""Task configurations: typed defaults, a TOML file on top, dotted overrides on top of that.

Every section is a pydantic model that validates each value as it is set, so a mistyped setting
(``--set trainer.lr=1e-3x``, ``model.cell=lstn``) stops the command at once with the key and the
problem, instead of failing deep inside training. The resolved configuration is saved in every
run folder and in the exported manifest, so a model can always be traced back to the exact
settings that produced it.
"""

from __future__ import annotations

import json
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Strict,
    ValidationError,
    model_validator,
)

from training.errors import ConfigError

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
GLOVE_50D = "glove/glove.6B.50d.txt.gz"

Cell = Literal["rnn", "gru", "lstm"]  # training.models.rnn.CELLS
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]  # dropout, label smoothing


def _ascending(values: list[int]) -> list[int]:
    if not values or values != sorted(set(values)):
        raise ValueError("give at least one cutoff, in ascending order")
    return values


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("each entity type may appear only once")
    return values


# NER entity types: names without spaces (the B-/I- tags are made from them), each once.
EntityTypes = Annotated[
    list[Annotated[str, Strict(), Field(pattern=r"^\S+$")]], AfterValidator(_distinct)
]


def _absolute(folder: str) -> str:
    return str(Path(folder).expanduser().absolute())


# The data sets' folder, made absolute where it is given: a run's config (and the manifest's
# training config) then still finds the dev data when export runs from another folder.
DatasetsDir = Annotated[str, AfterValidator(_absolute)]


class Section(BaseModel):
    """A group of settings: unknown keys are refused and every assignment is validated."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        coerce_numbers_to_str=True,
        allow_inf_nan=False,
    )


class TrainerConfig(Section):
    epochs: PositiveInt = 10
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    clip_norm: PositiveFloat = 5.0
    patience: PositiveInt = 3
    seed: int = 13
    threads: PositiveInt = 2
    max_batches: PositiveInt | None = None  # cap batches per epoch (dry runs)
    # Multiply the learning rate by this when dev stops improving.
    lr_decay: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    keep_epochs: bool = False  # also save each epoch's weights (epoch-N.pt), e.g. to average them


class SentimentDataConfig(Section):
    datasets_dir: DatasetsDir = str(DATASETS)
    use_sst: bool = True
    use_imdb: bool = True
    train_imdb: bool = True  # false: IMDB serves only as held-out dev data
    imdb_holdout: NonNegativeInt = 2500
    holdout_seed: int = 1234
    max_train_tokens: PositiveInt = 400  # reviews are truncated to this many tokens for training
    batch_tokens: PositiveInt = 6000  # token budget of one training batch
    max_batch_size: PositiveInt = 128
    limit_train: PositiveInt | None = None  # use only the first N shuffled training examples
    limit_dev: PositiveInt | None = None  # use only the first N examples of each dev set
    # Your own labelled texts (training.data.read_labeled_texts: TSV or JSON Lines), relative to
    # datasets_dir or absolute, with or instead of SST and IMDB: train_file is trained on,
    # dev_file is a dev set reported as dev_<name>_accuracy (the model is selected on the mean
    # of all dev sets' accuracies).
    train_file: str | None = None
    dev_file: str | None = None
    name: str = "own"


class SentimentModelConfig(Section):
    cell: Cell = "lstm"
    embedding_dim: PositiveInt = 50
    hidden_size: PositiveInt = 150
    num_layers: PositiveInt = 1
    bidirectional: bool = True
    dropout: Rate = 0.5
    embedding_dropout: Rate = 0.3
    pooling: Literal["max", "mean", "max_mean"] = "max_mean"
    freeze_embeddings: bool = False  # keep the GloVe vectors as initialised


class SentimentVocabConfig(Section):
    min_freq: PositiveInt = 2
    max_size: PositiveInt = 60000
    glove_fill: bool = True  # fill the remaining room with frequent GloVe words
    glove_path: str | None = GLOVE_50D  # relative to data.datasets_dir, or absolute; None: none


class SentimentLanguageModelConfig(Section):
    """Pre-training of the classifier's embedding and RNN as a bidirectional language model on
    unlabelled text: the training reviews and sentences, never the dev texts. ``init_from``
    then starts a classifier from the pre-trained checkpoint."""

    enabled: bool = False  # true: this run pre-trains instead of training the classifier
    # Adaptive softmax bands.
    cutoffs: Annotated[list[PositiveInt], AfterValidator(_ascending)] = Field(
        default_factory=lambda: [500, 5000]
    )
    div_value: PositiveFloat = 4.0  # each band's projection is this much smaller than the previous
    # Texts are cut into pieces of at most this many tokens (shorter loops).
    window: PositiveInt = 100


class SentimentAdversarialConfig(Section):
    """Adversarial training on the word vectors (Miyato et al. 2017): each batch is also trained
    on its own embedded texts moved by ``epsilon`` (L2 norm per text) in the direction that
    raises its loss most, a regulariser that costs a second forward and backward pass."""

    epsilon: NonNegativeFloat = 0.0  # 0: off
    weight: NonNegativeFloat = 1.0  # of the adversarial loss, added to the ordinary one


class SentimentTextConfig(Section):
    """How text becomes words (service.text.encoding.WordEncoderConfig); both were added later:
    a configuration saved before has neither, and reads as both off (see LATER_SETTINGS)."""

    lowercase_first: bool = True  # lower-case before tokenizing: "Mr." and "mr." split alike
    fold_apostrophes: bool = True  # read ’ as ' (isn’t -> is n't)


class SentimentConfig(Section):
    task: Literal["sentiment"] = "sentiment"
    text: SentimentTextConfig = Field(default_factory=SentimentTextConfig)
    data: SentimentDataConfig = Field(default_factory=SentimentDataConfig)
    vocab: SentimentVocabConfig = Field(default_factory=SentimentVocabConfig)
    model: SentimentModelConfig = Field(default_factory=SentimentModelConfig)
    language_model: SentimentLanguageModelConfig = Field(
        default_factory=SentimentLanguageModelConfig
    )
    adversarial: SentimentAdversarialConfig = Field(default_factory=SentimentAdversarialConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    max_tokens: PositiveInt = 800  # served: longer texts are truncated and flagged
    init_from: str | None = None  # start from this checkpoint's weights and vocabulary

    @model_validator(mode="after")
    def _adversarial_training_is_for_the_classifier(self) -> SentimentConfig:
        if self.language_model.enabled and self.adversarial.epsilon > 0:
            raise ValueError(
                "adversarial.epsilon applies to classifier training, not to "
                "language_model.enabled=true: set it when training from the pre-trained encoder"
            )
        return self

    @model_validator(mode="after")
    def _language_model_has_one_layer(self) -> SentimentConfig:
        # Above the first layer of a bidirectional RNN, the forward state at t has read the
        # backward state at t, which has seen token t + 1: the very token it is to predict.
        if self.language_model.enabled and self.model.num_layers > 1:
            raise ValueError(
                "language_model.enabled=true needs model.num_layers=1: in a deeper "
                "bidirectional RNN each direction's upper layers see the tokens it predicts"
            )
        return self


class NerDataConfig(Section):
    datasets_dir: DatasetsDir = str(DATASETS)
    train_file: str = "conll2003/train.txt"  # relative to datasets_dir, or absolute
    dev_file: str = "conll2003/valid.txt"  # model selection and early stopping only
    name: str = "conll2003"  # of the data set, in the manifest's training_data
    # The entity types, in the order of the model's outputs (O, then B-/I- of each type); None:
    # every type of the training file, sorted. configs/ner.toml pins CoNLL-2003's.
    entity_types: EntityTypes | None = None
    batch_size: PositiveInt = 10  # sentences per training batch (grouped by similar length)
    limit_train: PositiveInt | None = None  # use only the first N shuffled training sentences
    limit_dev: PositiveInt | None = None  # use only the first N dev sentences


class NerVocabConfig(Section):
    min_freq: PositiveInt = 1  # training words (lower-cased) seen this often enter the vocabulary
    # With GloVe 50d: 20 MB of embeddings, the artifact stays < 25 MB.
    max_size: PositiveInt = 100000
    glove_fill: bool = True  # fill the remaining room with frequent GloVe words
    glove_path: str | None = GLOVE_50D  # relative to data.datasets_dir, or absolute; None: none
    # Training characters seen this often enter the character vocabulary.
    char_min_freq: PositiveInt = 1


class NerModelConfig(Section):
    word_dim: PositiveInt = 50  # must match the GloVe file
    case_dim: PositiveInt = 10
    char_dim: PositiveInt = 25
    char_filters: PositiveInt = 30
    char_width: PositiveInt = 3
    char_dropout: Rate = 0.25  # on character embeddings, before the CNN
    embedding_dropout: Rate = 0.5  # on the word representation, before the LSTM
    hidden_size: PositiveInt = 200  # per direction
    num_layers: PositiveInt = 1
    cell: Cell = "lstm"
    dropout: Rate = 0.5  # on the LSTM outputs
    freeze_embeddings: bool = False
    constrain_transitions: bool = True  # the CRF cannot produce invalid IOB2 (O -> I-X)


class NerConfig(Section):
    task: Literal["ner"] = "ner"
    data: NerDataConfig = Field(default_factory=NerDataConfig)
    vocab: NerVocabConfig = Field(default_factory=NerVocabConfig)
    model: NerModelConfig = Field(default_factory=NerModelConfig)
    trainer: TrainerConfig = Field(
        default_factory=lambda: TrainerConfig(epochs=40, lr=1e-3, clip_norm=5.0, patience=6)
    )
    max_tokens: PositiveInt = 150  # served: longer sentences are split into windows of at most this
    max_word_chars: PositiveInt = 30  # characters of a word fed to the character CNN


class TranslationDataConfig(Section):
    datasets_dir: DatasetsDir = str(DATASETS)
    train_src: str = "multi30k/train.en"  # relative to datasets_dir, or absolute
    train_tgt: str = "multi30k/train.de"
    dev_src: str = "multi30k/val.en"  # model selection (dev BLEU) only
    dev_tgt: str = "multi30k/val.de"
    name: str = "multi30k"  # of the data set, in the manifest's training_data
    batch_tokens: PositiveInt = 2500  # padded (source or target) subword budget of a training batch
    max_batch_size: PositiveInt = 128
    max_train_tokens: PositiveInt = 80  # longer training pairs (in subwords) are dropped
    limit_train: PositiveInt | None = None  # use only the first N shuffled training pairs
    limit_dev: PositiveInt | None = None  # use only the first N dev pairs


class TranslationVocabConfig(Section):
    source_size: PositiveInt = 8000  # sentencepiece vocabulary per language (trained on train only)
    target_size: PositiveInt = 8000
    model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"


class TranslationModelConfig(Section):
    cell: Cell = "gru"
    embedding_dim: PositiveInt = 256
    encoder_hidden: PositiveInt = 256  # per direction
    decoder_hidden: PositiveInt = 384
    dropout: Rate = 0.3
    embedding_dropout: Rate = 0.1
    tie_embeddings: bool = True  # output layer = target embeddings (after a projection)


class TranslationDecodingConfig(Section):
    beam_size: PositiveInt = 5
    length_penalty: NonNegativeFloat = 1.0  # rank finished beams by sum log p / length ** this
    max_length_a: NonNegativeFloat = 1.5  # generate at most a * src_len + b subwords
    max_length_b: NonNegativeInt = 10
    max_length: PositiveInt = 200  # hard cap


class TranslationConfig(Section):
    task: Literal["translation"] = "translation"
    data: TranslationDataConfig = Field(default_factory=TranslationDataConfig)
    vocab: TranslationVocabConfig = Field(default_factory=TranslationVocabConfig)
    model: TranslationModelConfig = Field(default_factory=TranslationModelConfig)
    decoding: TranslationDecodingConfig = Field(default_factory=TranslationDecodingConfig)
    trainer: TrainerConfig = Field(
        default_factory=lambda: TrainerConfig(epochs=25, lr=1e-3, clip_norm=1.0, patience=5)
    )
    label_smoothing: Rate = 0.1
    max_source_tokens: PositiveInt = 200  # served: longer sources are cut to this many subwords
    init_from: str | None = None  # start from this checkpoint's weights and subword models


CONFIGS: dict[str, type[Section]] = {
    "sentiment": SentimentConfig,
    "ner": NerConfig,
    "translation": TranslationConfig,
}


def _section(config: Section, dotted: str) -> tuple[Section, str]:
    """The section holding the setting ``dotted`` (``trainer.lr``) and the setting's name; an
    unknown one is an error listing the settings of the deepest section its path reached."""
    *parents, leaf = dotted.split(".")
    section, path = config, []
    for name in parents:
        inner = getattr(section, name, None)
        if not isinstance(inner, Section):
            leaf = None  # not a section: the setting cannot be below it
            break
        section, path = inner, [*path, name]
    if leaf not in type(section).model_fields:
        keys = [".".join([*path, key]) for key in type(section).model_fields]
        raise ConfigError(f"unknown setting {dotted!r} (settings here: {', '.join(keys)})")
    if isinstance(getattr(section, leaf), Section):
        raise ConfigError(f"{dotted!r} is a group of settings: set one of its keys")
    return section, leaf


def _assign(config: Section, dotted: str, value: Any, text: str | None = None) -> None:
    """Set ``dotted`` to ``value``, validated; an error quotes ``text``, the value as the user
    wrote it, when given."""
    section, leaf = _section(config, dotted)
    try:
        setattr(section, leaf, value)
    except ValidationError as exc:
        error = exc.errors()[0]
        problem = error["msg"]
        if error["type"] == "list_type":
            problem += ' (write a list as JSON: ["PER", "LOC"], [500, 5000])'
        shown = repr(value) if text is None else repr(text)
        raise ConfigError(f"{dotted}={shown}: {problem}") from None


def _assign_text(config: Section, dotted: str, raw: str) -> None:
    """Set ``dotted`` from the text of a ``key=value`` override: ``none``/``null`` is None,
    other text is read as the setting's type (``0.01``, ``true``, ``lstm``), a JSON list as a
    list (``[500, 5000]``)."""
    if raw.lower() in ("none", "null"):
        _assign(config, dotted, None, raw)
        return
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list):  # numbers and booleans are read from the text itself
        _assign(config, dotted, raw, raw)
        return
    try:
        _assign(config, dotted, raw, raw)
    except ConfigError:
        _assign(config, dotted, value, raw)  # the JSON reading is what was meant


def _merge(config: Section, values: dict[str, Any], prefix: str = "") -> None:
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _merge(config, value, f"{dotted}.")
            continue
        if isinstance(value, bool) and not _takes_bool(config, dotted):  # pydantic: True is 1
            raise ConfigError(f"{dotted}={value!r}: a true/false value for a setting that is not")
        _assign(config, dotted, value)


def _takes_bool(config: Section, dotted: str) -> bool:
    section, leaf = _section(config, dotted)
    annotation = type(section).model_fields[leaf].annotation
    return annotation is bool or bool in typing.get_args(annotation)


def load_config(task: str, path: Path | None = None, overrides: list[str] = ()) -> Any:
    """Defaults for ``task``, updated by the TOML file at ``path``, then ``key=value`` overrides
    (raises :class:`ConfigError` naming the file or the setting that is wrong)."""
    config = CONFIGS[task]()
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not a valid TOML file: {exc}") from None
        try:
            _merge(config, values)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: give key=value, e.g. trainer.lr=0.001")
        _assign_text(config, key.strip(), raw.strip())
    try:  # settings that must agree with each other, checked once all are set
        return type(config).model_validate(config.model_dump())
    except ValidationError as exc:
        raise ConfigError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


# Settings added after models were trained whose default changes what a model computes: a saved
# configuration without them had the old behaviour, given here (from_dict).
LATER_SETTINGS: dict[str, dict[str, Any]] = {
    "sentiment": {"text": {"lowercase_first": False, "fold_apostrophes": False}},
}


def from_dict(task: str, values: dict[str, Any]) -> Any:
    """Rebuild a saved configuration (for instance the one stored in a checkpoint); settings
    added since it was saved take their defaults, or the behaviour they replaced
    (``LATER_SETTINGS``)."""
    config = CONFIGS[task]()
    _merge(config, _missing(LATER_SETTINGS.get(task, {}), values))
    _merge(config, values)
    return config


def _missing(later: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``later`` that ``values`` lacks (nested)."""
    missing: dict[str, Any] = {}
    for key, value in later.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            if inner := _missing(value, values[key]):
                missing[key] = inner
        elif key not in values:
            missing[key] = value
    return missing


def to_dict(config: Section) -> dict[str, Any]:
    return config.model_dump()


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
