"""User-facing errors: bad data and bad params end a stage with one clear line, never a traceback."""

from __future__ import annotations

import functools
import os
import signal
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


class Interrupted(BaseException):
    """SIGINT or SIGTERM delivered to a stage, raised where its main thread is. A BaseException, as KeyboardInterrupt
    is (no `except Exception` swallows it), but not a KeyboardInterrupt: Lightning turns that into exit status 1 and
    takes SIGTERM for a request to stop quietly (exit 0). `detail` is what the run leaves to resume from."""

    def __init__(self, signum: int):
        self.signum = signum
        self.detail = ""
        super().__init__(signal.Signals(signum).name)


def _raise_interrupted_in(owner_pid: int) -> Callable:
    def handler(signum, frame) -> None:
        if os.getpid() != owner_pid:  # a forked worker (ingest pool, DataLoader): die of the signal as before
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Interrupted(signum)

    return handler


def _interruptible() -> None:
    """SIGTERM, and SIGINT unless it is ignored (a job started in the background), raise Interrupted."""
    handler = _raise_interrupted_in(os.getpid())
    signal.signal(signal.SIGTERM, handler)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, handler)


def _stage_name(main: Callable) -> str:
    # Under `python -m tmpretrain.stages.ingest` the module is __main__; its spec keeps the real name.
    spec = main.__globals__.get("__spec__")
    return (spec.name if spec is not None else main.__module__).rpartition(".")[2]


def stage_entry(main: Callable[[], None]) -> Callable[[], None]:
    """Wrap a stage's main so that user errors print one line and exit 1 instead of a traceback, SIGINT and SIGTERM
    one line and the shell's status for the signal (128 + its number), and so that one stage at a time runs in a
    workspace (tmpretrain.locks)."""

    @functools.wraps(main)
    def wrapper() -> None:
        from .locks import one_run_at_a_time  # locks.py raises the errors defined here

        stage = _stage_name(main)
        _interruptible()
        try:
            with one_run_at_a_time(stage):
                main()
        except PretrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        except Interrupted as exc:
            # The user's (or the scheduler's) choice, not a crash: one line; the previous outputs are in place.
            print(f"{stage}: interrupted by {exc}{exc.detail}", file=sys.stderr)
            raise SystemExit(128 + exc.signum) from None
        except KeyboardInterrupt:
            print(f"{stage}: interrupted by SIGINT", file=sys.stderr)
            raise SystemExit(128 + signal.SIGINT) from None

    return wrapper
