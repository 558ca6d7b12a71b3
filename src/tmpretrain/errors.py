"""User-facing errors: bad data and bad params end a stage with one clear line, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class PretrainError(Exception):
    """An error the user can fix; its message names the file or the parameter at fault."""


class DataError(PretrainError):
    """Bad input data: the message starts with the offending path."""

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


def stage_entry(main: Callable[[], None]) -> Callable[[], None]:
    """Wrap a stage's main so that user errors print one line and exit 1 instead of a traceback."""

    @functools.wraps(main)
    def wrapper() -> None:
        try:
            main()
        except PretrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper
