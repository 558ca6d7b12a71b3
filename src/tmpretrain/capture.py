"""The replay capture layout users already have on disk (see docs/data.md): reading, validating and writing it.

    <root>/<track_id>/<replay_name>/frame_<iiiii>_<t>ms.<ext>, manifest.json, metadata.json

Every problem is raised as a DataError that names the offending file and the rule it breaks, so ingest can skip or
stop on it. The rules: nothing outside a replay's own directory is opened (after resolving links), every number is
what it claims to be (never rounded, truncated or clamped into another value), and no input file, however broken,
ends in anything but a DataError.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from .actions import N_ACTIONS, action_inputs
from .errors import DataError
from .files import read_capped, write_json
from .files import shown as _show

FRAME_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".npy")
# The image formats docs/data.md promises, told apart by content (each PIL plugin's magic bytes), whatever the name:
# PIL would also decode TIFF, PGM, SGI, PCX and dozens more named .jpeg, each one more decoder on untrusted bytes.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP")
DEFAULT_STEP_MS = 10
# Bounds no real capture comes near (frames of 64x64 to 256x256, 10-100 fps, races of minutes). Past them a file is
# broken or hostile; refusing it before decoding bounds the memory and time one file can take.
MAX_FRAME_PIXELS = 2048 * 2048
MAX_FRAME_SIDE = 8192
MAX_FRAME_BYTES = 64 * 2**20
MAX_JSON_BYTES = 256 * 2**20
MAX_TIME_MS = 24 * 3600 * 1000
MAX_STEP_MS = 1000
MAX_FPS = 1000
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


# ------------------------------------------------------------------------------------------ the tree


def discover_replays(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Replay directories under `root` (sorted), and (path, reason) for everything that is not one.

    Only the two levels of the layout are walked, so symlink loops below a replay cannot trap the scan. Each
    directory is read once: a link to a directory already reached (an alias, e.g. a track linked to another track,
    which would put the same replays in train and val) is reported instead, and so is a link that leaves the
    capture tree (DVC does not track what it points to). The root itself may be a link.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            root, "capture tree not found: set data.replays_dir to the directory that holds <track_id>/<replay_name>/"
        )
    real_root = root.resolve()
    problems: list[tuple[str, str]] = []
    seen = {real_root: root}  # real path -> the path it is read through
    candidates = []
    for track in _read_once(_subdirectories(root, problems) or [], real_root, seen, problems):
        children = _subdirectories(track, problems)
        if children == []:
            problems.append((str(track), "empty track directory (no replay directories)"))
        candidates += children or []
    replays = []
    for replay in _read_once(candidates, real_root, seen, problems):
        manifest = replay / "manifest.json"
        try:
            has_manifest = manifest.is_file()
        except OSError as exc:  # a replay directory without search permission
            problems.append((str(replay), f"cannot be read ({exc.strerror or exc})"))
            continue
        if has_manifest:
            replays.append(replay)
        elif os.path.lexists(manifest):
            problems.append((str(manifest), "not a regular file"))
        else:
            problems.append((str(replay), "no manifest.json (unfinished capture)"))
    return replays, problems


def _subdirectories(directory: Path, problems: list[tuple[str, str]]) -> list[Path] | None:
    """The directories in `directory`, or None (reported) where it cannot be listed."""
    try:
        return sorted(p for p in directory.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError as exc:
        problems.append((str(directory), f"cannot be listed ({exc.strerror or exc})"))
        return None


def _read_once(dirs: list[Path], real_root: Path, seen: dict[Path, Path], problems: list) -> list[Path]:
    """The directories of `dirs` (in order) that lead somewhere new inside the tree; the others are reported.
    A plain directory is preferred to a link reaching it, so the alias is what gets reported, whatever the order."""
    real = {}
    for d in dirs:
        try:
            real[d] = d.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # a link loop, or gone since listed
            problems.append((str(d), f"cannot be resolved ({exc})"))
    kept = set()
    for d in sorted(real, key=Path.is_symlink):  # stable: sorted order within plain directories and within links
        if not real[d].is_relative_to(real_root):
            problems.append((str(d), f"a link to {real[d]}, outside the capture tree (data.replays_dir): not read"))
        elif real[d] in seen:
            problems.append((str(d), f"an alias of {seen[real[d]]} (a link to a directory already read): read once"))
        else:
            seen[real[d]] = d
            kept.add(d)
    return [d for d in dirs if d in kept]


class _ReplayDirectory:
    """The files of one replay directory, listed once. Every name a manifest gives is checked here, so that
    nothing outside the directory is ever opened: no absolute paths, no '..', no link that resolves outside."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.real = path.resolve(strict=True)
            with os.scandir(path) as entries:
                kinds = {e.name: e.is_file(follow_symlinks=False) for e in entries}
        except (OSError, RuntimeError) as exc:
            raise DataError(path, f"cannot be listed ({getattr(exc, 'strerror', None) or exc})") from None
        self.names = set(kinds)  # a FIFO or a device named metadata.json is there (and refused by `file`)
        self.plain_files = {name for name, plain in kinds.items() if plain}

    def has(self, name: str) -> bool:
        return name in self.names

    def file(self, name: str, named_by: Path, what: str) -> tuple[Path, str]:
        """(path to open, key that is the same for every spelling of the same file) of the file `name` names.
        `what` (e.g. "entries[3].file") and `named_by` say where the name comes from, for the messages."""
        if name in self.plain_files:  # a regular file right here: the common case, checked without a system call
            return self.path / name, name
        if not name or "\x00" in name:
            raise DataError(named_by, f"{what} is {_show(name)}: not a file name")
        try:
            os.fsencode(name)
        except UnicodeEncodeError:
            raise DataError(named_by, f"{what} is {_show(name)}: cannot be encoded as a file name here") from None
        if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or PureWindowsPath(name).is_absolute():
            raise DataError(named_by, f"{what} is {_show(name)}: an absolute path (frames are files in the replay)")
        if ".." in name.replace("\\", "/").split("/"):
            raise DataError(named_by, f"{what} is {_show(name)}: '..' leads out of the replay directory")
        path = self.path / name
        source = "" if path == named_by else f" (named by {named_by.name} {what})"
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            raise DataError(path, f"named by {named_by.name} {what} but does not exist") from None
        except (OSError, RuntimeError) as exc:
            raise DataError(path, f"cannot be resolved ({exc})") from None
        if not real.is_relative_to(self.real):
            raise DataError(path, f"a link to {real}, outside the replay directory{source}")
        if not real.is_file():
            raise DataError(path, f"not a regular file{source}")
        return path, real.relative_to(self.real).as_posix()


# ------------------------------------------------------------------------------------------ a replay


def _as_int(value, lo: int, hi: int) -> int | None:
    """`value` as an integer in lo..hi, or None. An integral float (10.0) is that integer; booleans, fractions,
    NaN, inf, strings and containers are not integers."""
    if isinstance(value, float):
        if not value.is_integer():  # also NaN and inf
            return None
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


def _action(value, where: Path, what: str) -> int:
    a = _as_int(value, 0, N_ACTIONS - 1)
    if a is None:
        raise DataError(where, f"{what} is {_show(value)}; action ids must be integers 0..{N_ACTIONS - 1}")
    return a


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """json's object_pairs_hook: Python's json keeps the last of two equal keys, which the capture tool never
    writes twice; which one was meant is unknown, so the file is refused."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _load_json(path: Path):
    try:
        return json.loads(read_capped(path, MAX_JSON_BYTES).decode("utf-8"), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except _DuplicateKey as exc:
        raise DataError(path, f"the key {_show(exc.args[0])} appears twice in one object") from None
    except UnicodeDecodeError:
        raise DataError(path, "not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise DataError(path, "not valid JSON here (nested too deeply)") from None
    except ValueError as exc:  # an integer of more than 4300 digits: "Exceeds the limit (4300 digits) ...: advice"
        raise DataError(path, f"not valid JSON here ({str(exc).split(':')[0]})") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from None


def _parse_entries(manifest_path: Path, raw) -> tuple[list, object, object]:
    """Both manifest shapes: current {"entries", "actions"?, "meta"?} and legacy bare list of entries."""
    if isinstance(raw, list):
        return raw, None, None
    if isinstance(raw, dict):
        if not isinstance(raw.get("entries"), list):
            raise DataError(manifest_path, f"'entries' is {_show(raw.get('entries'))}; expected a list of entries")
        return raw["entries"], raw.get("actions"), raw.get("meta")
    raise DataError(manifest_path, 'expected {"entries": [...], ...} or a list of entries')


def _optional_number(metadata: dict, key: str, path: Path, lo, hi, integer: bool):
    """metadata[key] (None when absent or null) checked against lo..hi; anything else is refused."""
    value = metadata.get(key)
    if value is None:
        return None
    if integer:
        checked = _as_int(value, lo, hi)
    else:
        finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        checked = value if finite and lo < value <= hi else None
    if checked is None:
        kind = f"a whole number {lo}..{hi}" if integer else f"a number > {lo} and <= {hi}"
        raise DataError(path, f"{key} is {_show(value)}; expected {kind}")
    return checked


def read_replay(replay_dir: Path) -> Replay:
    """Parse and check one replay directory; raises DataError naming the file at fault."""
    replay_dir = Path(replay_dir)
    directory = _ReplayDirectory(replay_dir)
    manifest_path, _ = directory.file("manifest.json", replay_dir / "manifest.json", "manifest.json")
    entries, timeline_raw, meta = _parse_entries(manifest_path, _load_json(manifest_path))
    metadata_path = replay_dir / "metadata.json"
    metadata = {}
    if directory.has("metadata.json"):
        metadata_path, _ = directory.file("metadata.json", metadata_path, "metadata.json")
        metadata = _load_json(metadata_path)
    if not isinstance(metadata, dict):
        raise DataError(metadata_path, "expected a JSON object")
    if not entries:
        raise DataError(manifest_path, "manifest has no entries (no frames)")

    step_ms = _as_int(metadata.get("step_ms", DEFAULT_STEP_MS), 1, MAX_STEP_MS)
    if step_ms is None:
        raise DataError(
            metadata_path, f"step_ms is {_show(metadata['step_ms'])}; expected a whole number of ms, 1..{MAX_STEP_MS}"
        )
    fps = _optional_number(metadata, "fps", metadata_path, 0, MAX_FPS, integer=False)  # in the replay table
    width = _optional_number(metadata, "width", metadata_path, 1, MAX_FRAME_SIDE, integer=True)
    height = _optional_number(metadata, "height", metadata_path, 1, MAX_FRAME_SIDE, integer=True)

    files, seen, times, actions = [], set(), [], []
    for k, entry in enumerate(entries):
        where = f"entries[{k}]"
        if not isinstance(entry, dict) or "file" not in entry or "time_ms" not in entry:
            raise DataError(manifest_path, f"{where} lacks 'file' or 'time_ms'")
        t = _as_int(entry["time_ms"], 0, MAX_TIME_MS)
        if t is None:
            raise DataError(
                manifest_path,
                f"{where}.time_ms is {_show(entry['time_ms'])}; expected a whole number of ms, 0..{MAX_TIME_MS}",
            )
        if times and t <= times[-1]:
            kind = "duplicated" if t == times[-1] else "non-monotonic"
            raise DataError(manifest_path, f"{where}.time_ms={t} after {times[-1]}: {kind} time stamps")
        name = entry["file"]
        if not isinstance(name, str):
            raise DataError(manifest_path, f"{where}.file is {_show(name)}; expected a file name")
        frame, key = directory.file(name, manifest_path, f"{where}.file")
        if frame.suffix.lower() not in FRAME_EXTENSIONS:
            raise DataError(frame, f"unsupported frame extension (expected one of {', '.join(FRAME_EXTENSIONS)})")
        if key in seen:
            raise DataError(
                manifest_path, f"{where}.file {_show(name)} names a frame an earlier entry names (duplicate)"
            )
        seen.add(key)
        a = entry.get("action_idx")
        actions.append(-1 if a is None else _action(a, manifest_path, f"{where}.action_idx"))
        files.append(frame)
        times.append(t)

    timeline = None
    if timeline_raw is not None:
        if not isinstance(timeline_raw, list):
            raise DataError(manifest_path, f"'actions' is {_show(timeline_raw)}; expected a list of action ids")
        checked = [_action(a, manifest_path, f"actions[{k}]") for k, a in enumerate(timeline_raw)]
        timeline = np.asarray(checked, dtype=np.int8) if checked else None

    if meta is not None:
        _check_meta(meta, manifest_path)
    frame_times = np.asarray(times, dtype=np.int64)
    _check_frame_spacing(frame_times, fps, metadata_path)
    _check_frames_on_the_timeline(frame_times, timeline, step_ms, manifest_path)
    _check_frame_clock_offset(frame_times, np.asarray(actions, dtype=np.int16), timeline, step_ms, manifest_path)

    return Replay(
        track_id=replay_dir.parent.name,
        replay_name=replay_dir.name,
        path=replay_dir,
        frame_files=files,
        frame_times_ms=frame_times,
        frame_actions=np.asarray(actions, dtype=np.int16),
        timeline=timeline,
        step_ms=step_ms,
        width=width,
        height=height,
        metadata=metadata,
        meta=meta,
    )


# The frames' median spacing may differ this much from 1000 / fps (whole-ms time stamps, a dropped frame or two):
# more, and fps or the time stamps are wrong, and with them every label's timing.
SPACING_TOLERANCE = 0.25


def _check_frame_spacing(times_ms: np.ndarray, fps: float | None, metadata_path: Path) -> None:
    if fps is None or len(times_ms) < 2:
        return
    expected, spacing = 1000.0 / fps, float(np.median(np.diff(times_ms)))
    if abs(spacing - expected) > SPACING_TOLERANCE * expected:
        raise DataError(
            metadata_path,
            f"fps is {fps:g} (a frame every {expected:.1f} ms) but the frames of manifest.json are {spacing:g} ms "
            "apart (median): one of them is wrong, and with it the timing of every label",
        )


def _check_frames_on_the_timeline(times_ms: np.ndarray, timeline, step_ms: int, manifest_path: Path) -> None:
    """Most frames lie within the action timeline (0 .. len * step_ms): a frame clock offset from it (another
    origin, seconds for ms) leaves labels masked (or wrong) without a word."""
    if timeline is None:
        return
    span_ms = len(timeline) * step_ms
    inside = int((times_ms < span_ms).sum())
    if 2 * inside < len(times_ms):
        raise DataError(
            manifest_path,
            f"the frame clock does not match the action timeline: {inside} of {len(times_ms)} frames lie within its "
            f"0-{span_ms} ms (frames at {times_ms[0]}-{times_ms[-1]} ms); their labels would be masked",
        )


# Frames whose entries carry their action (action_idx) say which moment of the timeline they show. With a frame
# clock offset from the timeline (another origin, a late start), they disagree with it at their own time stamps
# and agree at the offset ones: reported when some shift within CLOCK_MAX_SHIFT_MS explains at least
# CLOCK_MIN_GAIN more of them than their own time stamps do, judged on at least CLOCK_MIN_FRAMES frames. A step or
# two of jitter in when the capture read the keys costs a few per cent of agreement, far below the gain; a shift
# of seconds in a replay of runs of held keys costs most of it. Without action_idx the format gives no way to tell.
CLOCK_MAX_SHIFT_MS = 10_000
CLOCK_MIN_GAIN = 0.25
CLOCK_MIN_FRAMES = 5


def _agreement(
    times_ms: np.ndarray, actions: np.ndarray, timeline: np.ndarray, step_ms: int, shift: int
) -> tuple[float, int]:
    """The share of frames whose own action is the timeline's at their time + shift steps, and how many frames
    that judges (those the shifted time puts on the timeline); the index rounds as the capture writer's does."""
    k = np.floor(times_ms / step_ms + 0.5).astype(np.int64) + shift
    on = (k >= 0) & (k < len(timeline))
    n = int(on.sum())
    return (float((timeline[k[on]] == actions[on]).mean()) if n else 0.0), n


def _check_frame_clock_offset(
    times_ms: np.ndarray, frame_actions: np.ndarray, timeline, step_ms: int, manifest_path: Path
) -> None:
    if timeline is None:
        return
    known = frame_actions >= 0
    if int(known.sum()) < CLOCK_MIN_FRAMES:
        return
    times, actions = times_ms[known], frame_actions[known]
    own, _ = _agreement(times, actions, timeline, step_ms, 0)
    if own >= 1.0 - CLOCK_MIN_GAIN:
        return  # nothing can beat it by the gain
    best, best_shift = own, 0
    reach = min(CLOCK_MAX_SHIFT_MS // step_ms, len(timeline))
    for shift in range(-reach, reach + 1):
        share, n = _agreement(times, actions, timeline, step_ms, shift)
        if n >= CLOCK_MIN_FRAMES and 2 * n >= len(times) and share > best:
            best, best_shift = share, shift
    if best - own >= CLOCK_MIN_GAIN:
        raise DataError(
            manifest_path,
            f"the frame clock is offset from the action timeline by {best_shift * step_ms:+d} ms: the entries' own "
            f"actions (action_idx) match the timeline at {own:.0%} of their time stamps and at {best:.0%} "
            f"{best_shift * step_ms:+d} ms away, so every label would be the action of another moment",
        )


def _check_meta(meta, manifest_path: Path) -> None:
    """`meta`: race-state snapshots, each an object with a finite time_ms, in increasing time order (frames pick
    the latest snapshot at or before them by binary search, which unordered times would make wrong)."""
    if not isinstance(meta, list):
        raise DataError(manifest_path, f"'meta' is {_show(meta)}; expected a list of race-state snapshots")
    last = None
    for k, snapshot in enumerate(meta):
        t = snapshot.get("time_ms") if isinstance(snapshot, dict) else None
        if isinstance(t, bool) or not isinstance(t, int | float) or not -MAX_TIME_MS <= t <= MAX_TIME_MS:
            raise DataError(manifest_path, f"meta[{k}] is {_show(snapshot)}; expected an object with a time_ms in ms")
        if last is not None and t <= last:
            raise DataError(manifest_path, f"meta[{k}].time_ms={t} after {last}: snapshots out of time order")
        last = t


# ------------------------------------------------------------------------------------------ frames


def read_frame(path: Path) -> np.ndarray:
    """Decode one frame to a 2-D uint8 array; colour frames are converted to grayscale."""
    return decode_frame(path)[0]


def decode_frame(path: Path) -> tuple[np.ndarray, str]:
    """Decode one frame to (2-D uint8 array, "gray" or "colour"), the colour kind of the file as stored."""
    path = Path(path)
    return decode_frame_bytes(path, read_frame_bytes(path))


def read_frame_bytes(path: Path) -> bytes:
    """The bytes of one frame file; a file larger than any real frame is refused before it is read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FRAME_BYTES:
                raise DataError(path, f"{size:,} bytes; larger than any real frame (at most {MAX_FRAME_BYTES:,})")
            return f.read()
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from None


def decode_frame_bytes(path: Path, data: bytes) -> tuple[np.ndarray, str]:
    """decode_frame of bytes already read from `path` (named in errors; its suffix picks .npy decoding)."""
    if not data:
        raise DataError(path, "empty file (zero bytes)")
    if path.suffix.lower() == ".npy":
        return _decode_npy(path, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
                _check_pixels(path, *img.size)  # from the header, before the pixels are decoded
                img.load()
                if img.mode not in _DECODABLE_MODES:
                    raise DataError(path, f"unsupported colour mode {img.mode!r} (expected 8-bit grayscale)")
                gray = img if img.mode == "L" else img.convert("L")
                return np.asarray(gray, dtype=np.uint8), _DECODABLE_MODES[img.mode]
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(path, f"refused before decoding ({exc})") from None
    except UnidentifiedImageError:
        raise DataError(path, "not an image (no JPEG, PNG or BMP header)") from None
    except Exception as exc:  # a third-party decoder on untrusted bytes: whatever it raises means "does not decode"
        raise DataError(path, f"corrupt or truncated image ({exc})") from None


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise DataError(
            path, f"image is {width}x{height} (WxH), larger than any real capture (at most {MAX_FRAME_PIXELS:,} pixels)"
        )


def _decode_npy(path: Path, data: bytes) -> tuple[np.ndarray, str]:
    try:
        buf = io.BytesIO(data)
        version = np.lib.format.read_magic(buf)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"format version {version} is not the one np.save writes for frames")
        shape, _, dtype = read_header[version](buf)
        if len(shape) not in (2, 3) or dtype.itemsize == 0:
            raise DataError(path, f"frame has shape {shape}; expected (H, W), (H, W, 1) or (H, W, 3)")
        _check_pixels(path, shape[1], shape[0])  # before allocating what the header claims
        if math.prod(shape) * dtype.itemsize > len(data) - buf.tell():
            raise ValueError("the file is shorter than its header says (truncated)")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except DataError:
        raise
    except Exception as exc:  # numpy's reader on untrusted bytes, as for images above
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
    write_json(replay_dir / "manifest.json", manifest)
    write_json(replay_dir / "metadata.json", metadata)
