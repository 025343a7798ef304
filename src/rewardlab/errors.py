"""Typed failures raised by rewardlab; every message names what was wrong and where."""

from __future__ import annotations

__all__ = [
    "RewardlabError",
    "ConfigError",
    "DataFormatError",
    "SequenceTooLongError",
    "CheckpointError",
    "TrainingDivergedError",
]


class RewardlabError(Exception):
    """Base class: the CLI prints these as one clear message and exits non-zero."""


class ConfigError(RewardlabError, ValueError):
    """An option has a value outside what it accepts."""


class DataFormatError(RewardlabError, ValueError):
    """A record in an input file cannot be read.

    ``location`` is ``"path:line"`` (or ``"path row N"`` for tabular files) and ``field`` the
    offending field, so the message points at the exact place to fix.
    """

    def __init__(self, location: str, message: str, field: str | None = None):
        self.location = location
        self.field = field
        where = f"{location}: field '{field}'" if field else location
        super().__init__(f"{where}: {message}")


class SequenceTooLongError(RewardlabError, ValueError):
    """A response does not fit in ``max_length`` tokens even with its prompt removed.

    ``items`` are the positions of the offending items in the call that raised (a caller that
    knows where they came from, e.g. ``score_file``, names the file lines instead).
    """

    def __init__(self, message: str, items: tuple[int, ...] = (), max_length: int | None = None):
        self.items = tuple(items)
        self.max_length = max_length
        super().__init__(message)


class CheckpointError(RewardlabError, OSError):
    """A checkpoint folder is missing, incomplete or of the wrong kind."""


class TrainingDivergedError(RewardlabError, FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""
