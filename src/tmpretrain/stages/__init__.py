"""DVC stage entry points: `python -m tmpretrain.stages.<stage>`, each a thin layer over the library, wrapped by
`stage_entry` (one line for a user error or a signal, one stage at a time per workspace)."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable

from ..errors import Interrupted, PretrainError
from ..locks import one_run_at_a_time


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
