"""User-facing errors: bad data and bad params end a stage with one clear line, never a traceback."""

from __future__ import annotations

import signal


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
