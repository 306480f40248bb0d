"""Problems that a user of ``python -m training`` can fix: the CLI prints them as
``error: ...`` (exit status 2) instead of a traceback. Torch-free, so the CLI can catch them
without importing torch."""


class DataError(ValueError):
    """A data file or data setting that its user can fix (the message says where and how)."""


class CheckpointError(ValueError):
    """A file that is not a checkpoint of the task it was given for."""


class ConfigError(ValueError):
    """A setting that is unknown or has a value of the wrong type or range."""


class UsageError(ValueError):
    """Command-line options that do not go together, or a run folder they would overwrite."""
