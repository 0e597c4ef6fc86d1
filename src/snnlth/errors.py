"""Exception types. Every user-facing failure is a :class:`SnnlthError` whose message is one line that names the
problem and the fix; the CLI prints it and exits with its ``exit_status``: 2 for bad input (config, data files, run
directories), 1 for a fault while running (a diverging loss, a full disk)."""


class SnnlthError(Exception):
    """Base class of errors caused by user input (config, data files, run directories)."""

    exit_status = 2


class ConfigError(SnnlthError, ValueError):
    """An invalid configuration value, flag or TOML key."""


class DataError(SnnlthError, ValueError):
    """A dataset file that is missing, truncated or malformed."""


class RunDirError(SnnlthError):
    """A run directory that holds another run, or whose files are damaged."""


class NumericalError(SnnlthError):
    """NaN or inf where a finite number is needed (weights to prune, a loss)."""

    exit_status = 1


class StorageError(SnnlthError):
    """A file of a run could not be written (disk full, permission denied); what was there before is intact."""

    exit_status = 1


class NotLearningError(SnnlthError):
    """A dense network that stays at chance (no spike reaches the output, the loss holds at a constant output's, or
    training and test accuracy end at chance): the search stops before anything is pruned (``--allow-chance`` goes
    on)."""

    exit_status = 1
