"""User-facing errors: bad data and bad params end a stage with one clear line, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class PretrainError(Exception):
    """An error the user can fix; its message names the file or the parameter at fault."""

    def __reduce__(self):
        # Pickle rebuilds an exception as cls(*args), but subclasses take (path, reason) or (key, reason) while args
        # holds only the message: a worker's DataError would come back as a TypeError (BrokenProcessPool).
        # Rebuild from the instance's state instead, which works for every subclass whatever its __init__.
        return _rebuild_error, (type(self), self.args, self.__dict__)


def _rebuild_error(cls: type[PretrainError], args: tuple, state: dict) -> PretrainError:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class DataError(PretrainError):
    """Bad input data, or a file or directory ingest cannot use: the message starts with the offending path."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ParamsError(PretrainError):
    """A parameter that cannot work: the message names the key and what is allowed."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"params.yaml: {key}: {reason}")


class ExportError(PretrainError):
    """An export that would not load strictly into the agent, or an export directory failing verification: the
    message starts with the file at fault."""


def stage_entry(main: Callable[[], None]) -> Callable[[], None]:
    """Wrap a stage's main so that user errors print one line and exit 1 instead of a traceback, and so that one
    stage at a time runs in a workspace (tmpretrain.locks)."""

    @functools.wraps(main)
    def wrapper() -> None:
        from .locks import one_run_at_a_time  # locks.py raises the errors defined here

        try:
            with one_run_at_a_time(main.__module__.rpartition(".")[2]):
                main()
        except PretrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            # Ctrl-C is the user's choice, not a crash: one line, and the shell's exit code for SIGINT.
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
