"""Reading files whose size and kind nobody promised (params.yaml, presets.yaml, capture JSON, export metadata):
each is opened once, must be a regular file and is read up to a cap, so that a FIFO, a link to /dev/zero or a
file of gigabytes is one clear error instead of a hang or a MemoryError. Values from such files in messages are
shown bounded (`shown`). And, before a long run writes, whether a folder takes a write at all (`free_for_writing`).
Writing: `write_json` (every JSON the package writes, replaced atomically) and `sha256_file`.

Imports the standard library only: `validate` reads params.yaml with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import reprlib
import shutil
import stat
import tempfile
from pathlib import Path

# Values from input files in messages: short, and safe for any nesting depth (plain repr() recurses).
_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlong = 3, 60, 60, 40
shown = _short.repr

_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


class NotReadable(OSError):
    """Not a regular file, or larger than the reader's cap. An OSError, so that every reader's existing `cannot be
    read (...)` handling reports it; str() is the reason."""


def read_capped(path, cap: int) -> bytes:
    """The bytes of the regular file `path`, at most `cap` of them; NotReadable otherwise, other OSErrors as raised
    by open. Opened non-blocking: opening a FIFO for reading would otherwise wait for a writer forever."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS.items() if test(info.st_mode)), "not a plain file")
            raise NotReadable(f"not a regular file: {kind}")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1) if info.st_size <= cap else b""  # cap + 1: it may grow while it is read
    finally:
        os.close(fd)
    if info.st_size > cap or len(data) > cap:
        raise NotReadable(f"{max(info.st_size, len(data)):,} bytes, larger than this file can be ({cap:,} at most)")
    return data


def free_for_writing(folder) -> int:
    """The free bytes on `folder`'s disk, once `folder` exists and has taken a new entry (a directory made and
    removed, as writing aside does): OSError where it cannot (read-only, a file in the way, no permission)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=folder))
    return shutil.disk_usage(folder).free


def write_json(path, obj) -> None:
    """`obj` as indented JSON with a final newline, written aside and moved in place: a reader (or a crash) never
    sees half a file. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
