"""The replay capture layout users already have on disk (see docs/data.md): reading, validating and writing it.

    <root>/<track_id>/<replay_name>/frame_<iiiii>_<t>ms.<ext>, manifest.json, metadata.json

Every problem is raised as a DataError that names the offending file, so ingest can skip or stop on it.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .actions import N_ACTIONS, action_inputs
from .errors import DataError

FRAME_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".npy")
DEFAULT_STEP_MS = 10
# Grayscale is what the capture tool writes; colour frames are converted (ITU-R 601 luma, as PIL does).
_DECODABLE_MODES = {"L": "gray", "LA": "gray", "RGB": "colour", "RGBA": "colour", "P": "colour"}


@dataclass
class Replay:
    """One replay directory, parsed and checked (frames not decoded yet)."""

    track_id: str
    replay_name: str
    path: Path
    frame_files: list[Path]
    frame_times_ms: np.ndarray  # int64, strictly increasing
    frame_actions: np.ndarray  # int16 per frame from the manifest entries, -1 where unknown
    timeline: np.ndarray | None  # int8 action per game step, or None (legacy manifest / no inputs)
    step_ms: int
    width: int | None
    height: int | None
    metadata: dict = field(default_factory=dict)
    meta: list | None = None


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise DataError(path, "not valid JSON (not UTF-8 text)") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror})") from None


def _check_action(value, where: Path, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < N_ACTIONS:
        raise DataError(where, f"{what} is {value!r}; action ids must be integers 0..{N_ACTIONS - 1}")
    return value


def discover_replays(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Replay directories under `root` (sorted), and (path, reason) for everything that is not one.

    Only the two levels of the layout are walked, so symlink loops below a replay cannot trap the scan.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "capture tree not found (data.replays_dir)")
    replays: list[Path] = []
    problems: list[tuple[str, str]] = []
    for track in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if not track.is_dir():
            continue
        children = sorted(p for p in track.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not children:
            problems.append((str(track), "empty track directory (no replay directories)"))
            continue
        for replay in children:
            if (replay / "manifest.json").is_file():
                replays.append(replay)
            else:
                problems.append((str(replay), "no manifest.json (unfinished capture)"))
    return replays, problems


def _parse_entries(manifest_path: Path, raw) -> tuple[list, list | None, list | None]:
    """Both manifest shapes: current {"entries", "actions"?, "meta"?} and legacy bare list of entries."""
    if isinstance(raw, list):
        return raw, None, None
    if isinstance(raw, dict) and isinstance(raw.get("entries"), list):
        return raw["entries"], raw.get("actions"), raw.get("meta")
    raise DataError(manifest_path, 'expected {"entries": [...], ...} or a list of entries')


def read_replay(replay_dir: Path) -> Replay:
    """Parse and check one replay directory; raises DataError naming the file at fault."""
    replay_dir = Path(replay_dir)
    manifest_path = replay_dir / "manifest.json"
    entries, timeline_raw, meta = _parse_entries(manifest_path, _load_json(manifest_path))
    metadata_path = replay_dir / "metadata.json"
    metadata = _load_json(metadata_path) if metadata_path.is_file() else {}
    if not isinstance(metadata, dict):
        raise DataError(metadata_path, "expected a JSON object")
    if not entries:
        raise DataError(manifest_path, "manifest has no entries (no frames)")

    step_ms = metadata.get("step_ms", DEFAULT_STEP_MS)
    if isinstance(step_ms, bool) or not isinstance(step_ms, int | float) or step_ms <= 0:
        raise DataError(metadata_path, f"step_ms is {step_ms!r}; expected a positive number of ms")

    files, times, actions = [], [], []
    for k, entry in enumerate(entries):
        where = f"entries[{k}]"
        if not isinstance(entry, dict) or "file" not in entry or "time_ms" not in entry:
            raise DataError(manifest_path, f"{where} lacks 'file' or 'time_ms'")
        t = entry["time_ms"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise DataError(manifest_path, f"{where}.time_ms is {t!r}; expected a number")
        if times and t <= times[-1]:
            kind = "duplicated" if t == times[-1] else "non-monotonic"
            raise DataError(manifest_path, f"{where}.time_ms={t} after {times[-1]}: {kind} time stamps")
        frame = replay_dir / str(entry["file"])
        if frame.suffix.lower() not in FRAME_EXTENSIONS:
            raise DataError(frame, f"unsupported frame extension (expected one of {', '.join(FRAME_EXTENSIONS)})")
        if not frame.is_file():
            raise DataError(frame, f"named by {manifest_path.name} {where} but does not exist")
        a = entry.get("action_idx")
        actions.append(-1 if a is None else _check_action(a, manifest_path, f"{where}.action_idx"))
        files.append(frame)
        times.append(t)

    timeline = None
    if timeline_raw is not None:
        if not isinstance(timeline_raw, list):
            raise DataError(manifest_path, "'actions' must be a list of action ids")
        for k, a in enumerate(timeline_raw):
            _check_action(a, manifest_path, f"actions[{k}]")
        timeline = np.asarray(timeline_raw, dtype=np.int8) if timeline_raw else None

    return Replay(
        track_id=replay_dir.parent.name,
        replay_name=replay_dir.name,
        path=replay_dir,
        frame_files=files,
        frame_times_ms=np.asarray(np.round(times), dtype=np.int64),
        frame_actions=np.asarray(actions, dtype=np.int16),
        timeline=timeline,
        step_ms=int(step_ms),
        width=metadata.get("width"),
        height=metadata.get("height"),
        metadata=metadata,
        meta=meta if isinstance(meta, list) else None,
    )


def read_frame(path: Path) -> np.ndarray:
    """Decode one frame to a 2-D uint8 array; colour frames are converted to grayscale."""
    return decode_frame(path)[0]


def decode_frame(path: Path) -> tuple[np.ndarray, str]:
    """Decode one frame to (2-D uint8 array, "gray" or "colour"), the colour kind of the file as stored."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror})") from None
    if not data:
        raise DataError(path, "empty file (zero bytes)")
    if path.suffix.lower() == ".npy":
        return _decode_npy(path, data)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode not in _DECODABLE_MODES:
                raise DataError(path, f"unsupported colour mode {img.mode!r} (expected 8-bit grayscale)")
            gray = img if img.mode == "L" else img.convert("L")
            return np.asarray(gray, dtype=np.uint8), _DECODABLE_MODES[img.mode]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"corrupt or truncated image ({exc})") from None


def _decode_npy(path: Path, data: bytes) -> tuple[np.ndarray, str]:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(path, f"corrupt .npy file ({exc})") from None
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise DataError(path, f"frame has NaN or infinite values (dtype {arr.dtype}); expected uint8 pixels")
        if not np.issubdtype(arr.dtype, np.integer) or arr.size == 0 or arr.min() < 0 or arr.max() > 255:
            raise DataError(path, f"frame dtype is {arr.dtype}; expected uint8 pixels 0..255")
    kind = "colour" if arr.ndim == 3 and arr.shape[-1] == 3 else "gray"
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif kind == "colour":
        arr = np.rint(arr @ np.array([0.299, 0.587, 0.114]))
    if arr.ndim != 2 or 0 in arr.shape:
        raise DataError(path, f"frame has shape {arr.shape}; expected (H, W), (H, W, 1) or (H, W, 3)")
    return np.ascontiguousarray(arr, dtype=np.uint8), kind


# --------------------------------------------------------------------------------------------- writing


def frame_file_name(step: int, time_ms: int, ext: str = ".jpeg") -> str:
    return f"frame_{step:05d}_{time_ms}ms{ext}"


def encode_frame(frame: np.ndarray, ext: str = ".jpeg", quality: int = 95) -> bytes:
    """Bytes of one grayscale frame as the capture tool writes it (JPEG quality 95 by default)."""
    if ext == ".npy":
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(frame, dtype=np.uint8), allow_pickle=False)
        return buf.getvalue()
    fmt = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[ext]
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt == "JPEG" else {}
    Image.fromarray(np.asarray(frame, dtype=np.uint8), mode="L").save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_replay(
    replay_dir: Path,
    frames: list[np.ndarray],
    frame_times_ms: list[int],
    timeline: np.ndarray | None,
    *,
    step_ms: int = DEFAULT_STEP_MS,
    fps: float,
    meta: list[dict] | None = None,
    metadata_extra: dict | None = None,
    legacy_manifest: bool = False,
    ext: str = ".jpeg",
    capture_start_utc: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc),
) -> None:
    """Write one replay in the capture layout: frames, manifest.json and metadata.json.

    `timeline[k]` is the action held at k * step_ms. Everything written is a pure function of the arguments,
    so the same inputs give the same bytes (the capture timestamps derive from `capture_start_utc`).
    """
    replay_dir = Path(replay_dir)
    replay_dir.mkdir(parents=True, exist_ok=True)
    height, width = np.asarray(frames[0]).shape
    entries = []
    for step, (frame, t) in enumerate(zip(frames, frame_times_ms, strict=True)):
        t = int(t)
        name = frame_file_name(step, t, ext)
        (replay_dir / name).write_bytes(encode_frame(frame, ext))
        entry = {
            "file": name,
            "step": step,
            "time_ms": t,
            "capture_timestamp_utc": (capture_start_utc + timedelta(milliseconds=t)).isoformat(),
        }
        if timeline is not None:
            k = min(int(math.floor(t / step_ms + 0.5)), len(timeline) - 1)
            entry["action_idx"] = int(timeline[k])
            entry["inputs"] = action_inputs(int(timeline[k]))
        entries.append(entry)
    if legacy_manifest:
        manifest: object = entries
    else:
        manifest = {"entries": entries}
        if timeline is not None:
            manifest["actions"] = [int(a) for a in timeline]
        if meta is not None:
            manifest["meta"] = meta
    race_time = int(frame_times_ms[-1]) if timeline is None else len(timeline) * step_ms
    metadata = {
        "track_id": replay_dir.parent.name,
        "replay_name": replay_dir.name,
        "challenge_name": replay_dir.parent.name,
        "fps": fps,
        "step_ms": step_ms,
        "width": int(width),
        "height": int(height),
        "race_time_ms": race_time,
        "total_frames": len(entries),
        "race_finished": True,
        "actual_race_time_ms": race_time,
        "fps_meta": fps,
        "capture_interval_ms": 1000.0 / fps,
        "meta_interval_ms": None,
        "running_speed": 1,
        "tmi_script_used": False,
        **(metadata_extra or {}),
    }
    _write_json(replay_dir / "manifest.json", manifest)
    _write_json(replay_dir / "metadata.json", metadata)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
