"""Errors for expected user mistakes. The CLI prints their message as one line, without a traceback."""


class UserError(Exception):
    """Base class: the message is one sentence naming the bad value and what would be right."""


class ConfigError(UserError, ValueError):
    """A configuration key or value that cannot be used."""


class UnknownNameError(UserError, KeyError):
    """A component name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want a plain sentence
        return str(self.args[0])


class DatasetError(UserError, ValueError):
    """A dataset that is missing, incomplete or malformed; the message names the path and the expected layout."""


class WeightsError(UserError, FileNotFoundError):
    """Pretrained weights were asked for but are not available locally."""


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss term or embedding became NaN or inf; the message names the epoch, step and last finite values."""


class TrackingError(UserError, ConnectionError):
    """The MLflow tracking server cannot be reached when it must be (before a sweep, when syncing)."""


class DiskFullError(UserError, OSError):
    """No space left where a run writes its state; the message names the path."""


class RunDirectoryError(UserError, RuntimeError):
    """An output directory that holds another run, or that another process is using."""
