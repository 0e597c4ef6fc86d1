"""Exception types. Every user-facing failure is a :class:`SnnlthError` whose message is one line that names the
problem and the fix; the CLI prints it and exits with status 2."""


class SnnlthError(Exception):
    """Base class of errors caused by user input (config, data files, run directories)."""


class ConfigError(SnnlthError, ValueError):
    """An invalid configuration value, flag or TOML key."""


class DataError(SnnlthError, ValueError):
    """A dataset file that is missing, truncated or malformed."""


class RunDirError(SnnlthError):
    """A run directory that holds another run, or whose files are damaged."""


class NumericalError(SnnlthError):
    """NaN or inf where a finite number is needed (weights to prune, a loss)."""
