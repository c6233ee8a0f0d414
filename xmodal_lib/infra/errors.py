"""The error classes behind the one error surface of the ``xmodal`` command line.

Every message names the file or parameter and what was expected. The CLI (``xmodal_lib.cli.main``)
prints one line per error and exits with status 2 for :class:`InputError` (bad input: a file, a
parameter, a folder the user pointed at) and 1 for :class:`RunFailure` or anything unexpected;
``--debug`` shows the traceback. :class:`InputError` subclasses ``ValueError`` so code that caught
``ValueError`` before keeps working; ``xmodal_lib.data.DataError`` subclasses it (it stays where it
is, for its importers).
"""
from __future__ import annotations

import signal


class XModalError(Exception):
    """Base of every error xmodal raises on purpose."""


class InputError(XModalError, ValueError):
    """Bad input (a file, a parameter, a folder): the message names it and what was expected."""


class ConfigError(InputError):
    """A parameter or configuration value that cannot be used."""


class CheckpointError(InputError):
    """A checkpoint or weight file that is missing, unreadable or does not fit the model."""


class UntrustedPickleError(CheckpointError):
    """A pickle that would need code execution to load; refused, never executed."""


class ResumeMismatchError(ConfigError):
    """``resume`` with a setup that differs from the one stored in the checkpoint."""


class OutputError(InputError):
    """An output folder that cannot be created or written."""


class RunFailure(XModalError, RuntimeError):
    """Work that started and failed (exit status 1), as opposed to bad input (exit status 2)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received; ``signum`` says which (exit status ``128 + signum``).

    A ``KeyboardInterrupt`` (not an ``Exception``), so ``except Exception`` blocks let it through."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        self.signum = int(signum)
        self.run_dir = None  # set by ``xmodal reproduce``: the run folder that recorded the interruption
        super().__init__(message or f"interrupted by {signal.Signals(self.signum).name}")


def one_line(err: BaseException) -> str:
    """``err``'s message on one line (line breaks joined with ``; ``), its class name when empty."""
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__
