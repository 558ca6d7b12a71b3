"""Preprocessing shared by ingest and the simulator env: frame decode, resize and the race-state float features.

Train/eval parity rests on this module. The frame store (frame_store.py) is built by `decode_frame` and `resize_frame`
from the frame files of a capture tree, and its float rows by `float_vectors` from each replay's `meta`
snapshots. The env (synthetic/env.py) must show a policy exactly what training showed it, so it builds its
observations with the same functions: `observation_frame` writes its rendered frame as the capture tool does
and reads it back as ingest does (the JPEG artefacts included), `snapshot_floats` turns its race state into the
same 184 floats. Change a function here and both sides change together; a test keeps the env's observation
byte-equal to the stored frame of the same car state.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .capture import IMAGE_FORMATS, decode_frame_bytes, encode_frame
from .errors import DataError

if TYPE_CHECKING:
    from .capture import Replay

FLOAT_DIM = 184  # race-state floats per frame: the agent's float input

# encode_frame's formats that PIL reads back (.npy frames go through decode_frame_bytes)
_PIL_EXTENSIONS = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG", ".bmp": "BMP"}


# --------------------------------------------------------------------------------------------- frames


def decode_frame(path: Path, data: bytes) -> tuple[np.ndarray, str]:
    """The bytes of one stored frame file -> (grayscale uint8 (H, W) at the file's own size, "gray" or "colour").

    Ingest's decoder (capture.decode_frame_bytes: JPEG, PNG, BMP or .npy, checked, colour to ITU-R 601 luma);
    `path` names the file in errors and its suffix picks .npy decoding. Raises DataError for a bad frame."""
    return decode_frame_bytes(path, data)


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """A decoded uint8 (H, W) frame at the frame store's size: PIL bilinear, which widens its support when
    shrinking (it antialiases). The frame itself when it already has that size."""
    if frame.shape == (height, width):
        return frame
    return _resized(Image.fromarray(frame, mode="L"), height, width)


def _resized(img: Image.Image, height: int, width: int) -> np.ndarray:
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def observation_frame(rendered: np.ndarray, ext: str, height: int, width: int) -> np.ndarray:
    """The frame ingest would store for `rendered` (grayscale uint8, as the capture tool grabs it) written as
    `ext` (encode_frame, JPEG quality 95 by default), at the store's `height` x `width`: what the env observes.

    Equal, byte for byte, to resize_frame(decode_frame(..., encode_frame(rendered, ext))[0], height, width). For
    the image formats the decoded PIL image goes straight to the resize (one array copy less than the checked
    decoder makes; the pixels are the same, and the parity tests compare the two)."""
    data = encode_frame(rendered, ext)
    fmt = _PIL_EXTENSIONS.get(ext.lower())
    if fmt is None:
        frame, _ = decode_frame(Path(f"frame{ext}"), data)
        return resize_frame(frame, height, width)
    with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
        img.load()
        return _resized(img if img.mode == "L" else img.convert("L"), height, width)


# --------------------------------------------------------------------------------------------- floats


def snapshot_floats(snapshot: dict) -> np.ndarray:
    """One race-state snapshot (a manifest `meta` object) -> float32 (184,): its numeric leaves in order (dict
    keys sorted, `time_ms` skipped at every level), zero-padded or truncated to the agent's 184 floats.
    Raises ValueError when a value is not a finite float32 (NaN, inf, or too large), rather than letting it
    become another number."""
    out = np.zeros(FLOAT_DIM, dtype=np.float32)
    leaves = _numeric_leaves(snapshot, FLOAT_DIM)
    with np.errstate(over="ignore"):
        out[: len(leaves)] = leaves
    if not np.isfinite(out).all():
        raise ValueError("holds a value that is not a finite float32 (NaN, inf or huge)")
    return out


def float_vectors(replay: Replay) -> np.ndarray:
    """(n_frames, 184) race-state vectors of one replay: `snapshot_floats` of the latest `meta` snapshot at or
    before each frame (the first snapshot before it; zeros without `meta`). A snapshot that is not finite refuses
    the replay (DataError naming its manifest)."""
    out = np.zeros((len(replay.frame_times_ms), FLOAT_DIM), dtype=np.float32)
    snaps = replay.meta or []  # read_replay checked: objects with increasing numeric time_ms
    if not snaps:
        return out
    times = np.array([m["time_ms"] for m in snaps], dtype=np.float64)
    vectors = np.zeros((len(snaps), FLOAT_DIM), dtype=np.float32)
    for k, m in enumerate(snaps):
        try:
            vectors[k] = snapshot_floats(m)
        except ValueError as exc:
            raise DataError(replay.path / "manifest.json", f"meta[{k}] {exc}") from None
    pick = np.clip(np.searchsorted(times, replay.frame_times_ms, side="right") - 1, 0, len(snaps) - 1)
    return vectors[pick]


def _numeric_leaves(obj, limit: int) -> list[float]:
    """The first `limit` numeric leaves in order (dict keys sorted, `time_ms` skipped at every level). Iterative,
    so no nesting depth can overflow the stack."""
    out: list[float] = []
    stack = [obj]
    while stack and len(out) < limit:
        x = stack.pop()
        if isinstance(x, bool | int | float):
            out.append(float(x) if not isinstance(x, int) or abs(x) < 2**128 else float("inf"))
        elif isinstance(x, dict):
            stack.extend(x[key] for key in sorted(x, reverse=True) if key != "time_ms")
        elif isinstance(x, list):
            stack.extend(reversed(x))
    return out
