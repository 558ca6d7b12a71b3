"""The replay cache ("frame store"): every frame exactly once, as memory-mappable uint8, plus an index.

    <cache_dir>/frames.npy         uint8 (N, H, W), frames of each replay contiguous and in time order
    <cache_dir>/index.npz          per frame: replay (int32), time_ms (int64), action (int16, -1 unknown)
                                   per replay: frame_start, frame_count, timeline_start, timeline_len, step_ms, split
    <cache_dir>/timelines.npy      int8, every replay's 10 ms action timeline, concatenated
    <cache_dir>/floats.npy         float32 (N, 184) race-state vectors from the manifest `meta` (data.include_floats)
    <cache_dir>/cache_meta.json    source content hash, preprocessing params, split, replay table; written last
    <cache_dir>/ingest_report.json what was skipped and why, replays whose labels fall back to frame entries

Windows for stacked frames and labels for time offsets are index arrays into this store (see windows.py), so
n_stack costs no frame copies. The cache is built in a temporary directory and renamed into place at the end:
an interrupted ingest never leaves a cache that looks valid. Free space is checked before decoding, frames are
written with plain file writes (a full disk is an error, never a SIGBUS through a memory map), a failed build
removes its temporary directory, and one lock per cache directory keeps two ingests from sharing it.
Decoding, resizing and the float rows are preprocess.py's public functions, the ones the simulator env observes
through (train/eval parity).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import threading
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .capture import MAX_JSON_BYTES, Replay, discover_replays, read_frame_bytes, read_replay
from .errors import DataError, ParamsError
from .files import read_capped, sha256_file, write_json
from .files import shown as _show
from .locks import Busy, acquire, release
from .params import DataParams
from .paths import check_output_dir, replace_output_dir
from .preprocess import FLOAT_DIM, decode_frame, float_vectors, resize_frame

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------ decoding


@dataclass
class DecodedReplay:
    frames: np.ndarray  # uint8 (n, H, W) at the cache resolution
    file_hashes: list[tuple[str, str]]  # (path relative to the tree root, sha256) of every file read


def _declared_shape(replay: Replay) -> tuple[int, int] | None:
    return (replay.height, replay.width) if replay.height and replay.width else None


def decode_replay(replay: Replay, root: Path, height: int, width: int) -> DecodedReplay:
    """Decode, check and resize every frame of one replay. Raises DataError naming the first bad frame."""
    return _decode_frames(replay.frame_files, _declared_shape(replay), root, height, width)


def _decode_frames(files: list[Path], expected_shape, root: Path, height: int, width: int) -> DecodedReplay:
    out = np.empty((len(files), height, width), dtype=np.uint8)
    source = "metadata.json width x height" if expected_shape else "its first frame"
    first_kind = None
    hashes = []
    for i, path in enumerate(files):
        data = read_frame_bytes(path)  # read once: decoded and hashed from the same bytes
        frame, kind = decode_frame(path, data)
        if expected_shape is None:
            expected_shape = frame.shape
        if frame.shape != expected_shape:
            raise DataError(
                path,
                f"frame is {frame.shape[1]}x{frame.shape[0]} (WxH) but the replay's frames "
                f"are {expected_shape[1]}x{expected_shape[0]} ({source})",
            )
        if first_kind is None:
            first_kind = kind
        elif kind != first_kind:
            raise DataError(path, f"{kind} frame in a replay of {first_kind} frames")
        out[i] = resize_frame(frame, height, width)
        hashes.append((path.relative_to(root).as_posix(), hashlib.sha256(data).hexdigest()))
    return DecodedReplay(out, hashes)


def _decode_task(args):
    # Only paths and sizes cross to the worker (not the parsed manifest, whose nesting pickle would recurse on).
    try:
        return _decode_frames(*args)
    except DataError as exc:
        return exc


def _exit_with_parent() -> None:
    """Pool initializer: end this worker when the process that started it dies, even by SIGKILL (a pool worker
    otherwise waits for tasks forever). Waits on the parent's sentinel, which works for fork and spawn, on Windows
    too."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# ----------------------------------------------------------------------------------------- the split


def split_tracks(track_ids: list[str], val_fraction: float, seed: int, test_fraction: float = 0.0) -> dict[str, str]:
    """Train/val/test by track (adjacent frames of a replay are near duplicates, so a frame split would leak).

    One seeded shuffle of the sorted ids: val = its first round(val_fraction * n) tracks (at least one, and at least
    one track is left for train), test = the next round(test_fraction * n) (at least one when test_fraction > 0).
    Adding a test split keeps the val tracks of the same seed."""
    tracks = sorted(set(track_ids))
    if len(tracks) < 2:
        raise ParamsError(
            "data.val_fraction",
            f"a train/val split by track needs at least two tracks; data.replays_dir has {len(tracks)} usable "
            f"({', '.join(tracks) or 'none'}): add a track",
        )
    n_val = min(max(1, round(val_fraction * len(tracks))), len(tracks) - 1)
    n_test = max(1, round(test_fraction * len(tracks))) if test_fraction > 0 else 0
    if n_val + n_test > len(tracks) - 1:
        raise ParamsError(
            "data.test_fraction",
            f"{test_fraction} of {len(tracks)} usable tracks is {n_test} test track(s); with {n_val} val track(s) "
            f"none is left for train: add tracks, lower it, or set 0 (no test split)",
        )
    order = np.random.default_rng(seed).permutation(len(tracks))
    role = {tracks[i]: "val" for i in order[:n_val]} | {tracks[i]: "test" for i in order[n_val : n_val + n_test]}
    return {t: role.get(t, "train") for t in tracks}


# ------------------------------------------------------------------------------------------- ingest


def build_frame_store(params: DataParams, *, progress: bool = True) -> dict:
    """Read the capture tree `params.replays_dir` into a frame store at `params.cache_dir`. Returns the report.

    Every choice that shapes the store comes from `params` (the size, the split, `params.include_floats`), so the
    store is a function of the params file and the tree; `progress` only shows a bar. Frames are decoded and
    resized, and float rows computed, by preprocess.py, which the env shares.

    Bad replays are skipped and listed in the report, or stop the build when `params.strict` is set. On any
    failure the previous cache is left as it was and no `<cache_dir>.partial` remains.
    """
    root = Path(params.replays_dir)
    cache_dir = Path(params.cache_dir)
    # Before the lock file is made beside it: a cache_dir of `..` or of the capture tree is refused untouched.
    check_output_dir("data.cache_dir", cache_dir, {"data.replays_dir": root})
    with frame_store_lock(cache_dir):
        tmp = cache_dir.with_name(cache_dir.name + ".partial")
        try:
            return _build(params, root, cache_dir, tmp, progress)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful build (renamed into place)


def _build(params: DataParams, root: Path, cache_dir: Path, tmp: Path, progress: bool) -> dict:
    include_floats = params.include_floats
    replay_dirs, problems = discover_replays(root)
    skipped: list[dict] = []

    def fail_or_skip(exc: DataError) -> None:
        if params.strict:
            raise exc
        skipped.append({"path": exc.path, "reason": exc.reason})

    for path, reason in problems:
        fail_or_skip(DataError(path, reason))

    replays: list[Replay] = []
    floats: list[np.ndarray | None] = []
    for d in replay_dirs:
        try:
            replay = read_replay(d)
            vectors = float_vectors(replay) if include_floats else None
        except DataError as exc:
            fail_or_skip(exc)
            continue
        replays.append(replay)
        floats.append(vectors)
    if not replays:
        raise DataError(root, no_usable_replays(root, skipped))

    h, w = params.image_height, params.image_width
    n_max = sum(len(r.frame_files) for r in replays)
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run
    with _write_errors(cache_dir):
        tmp.mkdir(parents=True)
    _check_free_space(tmp, cache_dir, _bytes_needed(replays, h, w, include_floats))

    kept: list[Replay] = []
    kept_floats: list[np.ndarray | None] = []
    file_hashes: list[tuple[str, str]] = []
    n = 0
    tasks = [(r.frame_files, _declared_shape(r), root, h, w) for r in replays]
    pool = (
        ProcessPoolExecutor(max_workers=params.workers, initializer=_exit_with_parent) if params.workers > 1 else None
    )
    try:
        results = pool.map(_decode_task, tasks) if pool else map(_decode_task, tasks)
        with _write_errors(cache_dir), open(tmp / "frames.npy", "wb") as out:
            out.write(_npy_header((n_max, h, w)))
            # disable=None: progress bars on a terminal only, no redraws in a log file
            bar = tqdm(total=len(replays), desc="ingest", unit="replay", disable=None if progress else True)
            with bar:
                for replay, vectors, result in zip(replays, floats, results, strict=True):
                    bar.update()
                    if isinstance(result, DataError):
                        fail_or_skip(result)
                        continue
                    out.write(result.frames.data)
                    n += len(result.frames)
                    kept.append(replay)
                    kept_floats.append(vectors)
                    file_hashes += result.file_hashes
            if not kept:
                raise DataError(root, no_usable_replays(root, skipped))
            if n < n_max:  # replays skipped while decoding: the frames written are the first n, shrink in place
                out.seek(0)
                out.write(_npy_header((n, h, w)))
                out.truncate(len(_npy_header((n, h, w))) + n * h * w)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)

    try:
        split = split_tracks([r.track_id for r in kept], params.val_fraction, params.split_seed, params.test_fraction)
    except ParamsError as exc:
        if not skipped:
            raise
        # Too few tracks left because replays were skipped: say which, or the user looks for the wrong cause.
        first = skipped[0]
        raise ParamsError(
            exc.key,
            f"{exc.reason}; {len(skipped)} replay(s) were skipped, the first {first['path']}: {first['reason']}",
        ) from None
    for r in kept:
        for name in ("manifest.json", "metadata.json"):
            if (r.path / name).is_file():
                file_hashes.append(((r.path / name).relative_to(root).as_posix(), sha256_file(r.path / name)))
    # surrogateescape: a file name that is not UTF-8 hashes as its bytes on disk
    listing = "\n".join(f"{p}\t{s}" for p, s in sorted(file_hashes))
    content_hash = hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()

    index, timelines, table = _index(kept, split, root)
    fallback = [row["replay"] for row in table if not row["has_timeline"]]
    report = {
        "replays_dir": str(root),
        "n_replays": len(kept),
        "n_frames": int(n),
        "n_skipped": len(skipped),
        "skipped": skipped,
        "label_fallback_replays": fallback,
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "complete": True,
        "source": {"replays_dir": str(root), "content_hash": content_hash, "n_files": len(file_hashes)},
        "preprocessing": {
            "image_height": h,
            "image_width": w,
            "grayscale": "ITU-R 601 luma",
            "resize": "PIL bilinear, antialiased when shrinking",
            "dtype": "uint8",
            "include_floats": include_floats,
        },
        "split": {
            "by": "track",
            "seed": params.split_seed,
            "val_fraction": params.val_fraction,
            "test_fraction": params.test_fraction,
            **{f"{name}_tracks": sorted(t for t, s in split.items() if s == name) for name in SPLITS},
        },
        "n_frames": int(n),
        "n_replays": len(kept),
        "label_fallback_replays": fallback,
        "replays": table,
    }
    with _write_errors(cache_dir):
        np.savez(tmp / "index.npz", **index)
        np.save(tmp / "timelines.npy", timelines)
        if include_floats:
            np.save(tmp / "floats.npy", np.concatenate(kept_floats))
        write_json(tmp / "ingest_report.json", report)
        write_json(tmp / "cache_meta.json", meta)  # last: its presence marks a complete cache
    try:
        replace_output_dir("data.cache_dir", cache_dir, tmp, others={"data.replays_dir": root})
    except OSError as exc:
        raise DataError(cache_dir, f"cannot put the new frame store in place: {exc.strerror or exc}") from None
    return report


LAYOUT = """\
  <data.replays_dir>/
    <track_id>/                     e.g. A01-Race
      <replay_name>/                e.g. pos1_ben3847_89250ms.replay
        manifest.json               {"entries": [{"file", "time_ms", "action_idx"}, ...], "actions": [...]}
        metadata.json               fps, step_ms, width, height
        frame_00000_0ms.jpeg ...    .jpeg .jpg .png .bmp .npy"""


def no_usable_replays(root: Path, skipped: list[dict], shown: int = 20) -> str:
    """The message for a tree nothing could be read from: the layout expected, a hint when data.replays_dir points
    one level too deep, and the reason for each replay (the first `shown`)."""
    lines = [f"no usable replays in data.replays_dir ({len(skipped)} skipped). Expected layout:", LAYOUT]
    try:
        if (root / "manifest.json").is_file():
            lines.append(f"hint: {root} is itself a replay directory; point data.replays_dir two levels up")
        elif any((child / "manifest.json").is_file() for child in root.iterdir() if child.is_dir()):
            lines.append(f"hint: {root} holds replay directories; it looks like a track: point data.replays_dir one up")
    except OSError:
        pass  # a tree that cannot be read gives no hint; `skipped` below says why
    if skipped:
        lines.append("skipped:")
        lines += [f"  {s['path']}: {s['reason']}" for s in skipped[:shown]]
        if len(skipped) > shown:
            lines.append(f"  ... and {len(skipped) - shown} more")
    return "\n".join(lines)


@contextlib.contextmanager
def frame_store_lock(cache_dir: Path):
    """Hold `<cache_dir>.lock` while building (tmpretrain.locks): a second ingest into the same cache stops at once
    with a message naming the holder, whose pid, host and start time are in `<cache_dir>.holder` while it runs."""
    with _write_errors(cache_dir):
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = acquire(cache_dir.with_name(cache_dir.name + ".lock"))
    except Busy as exc:
        raise DataError(cache_dir, f"in use by another ingest ({exc}); wait for it to end, or stop it") from None
    except OSError as exc:
        raise DataError(cache_dir, f"cannot create its lock file: {exc.strerror or exc} ({exc.filename})") from None
    try:
        yield
    finally:
        release(lock)


@contextlib.contextmanager
def _write_errors(cache_dir: Path):
    """A failed write (disk full, file size limit, permissions) ends the build with one line naming the cache."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise DataError(
            cache_dir, f"cannot write the frame store: {exc.strerror or exc}{where}; the previous cache is kept"
        ) from None


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy header of a uint8 array; numpy pads it so that its length does not depend on the first axis."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _bytes_needed(replays: list[Replay], h: int, w: int, include_floats: bool) -> int:
    n = sum(len(r.frame_files) for r in replays)
    timeline_steps = sum(0 if r.timeline is None else len(r.timeline) for r in replays)
    per_frame = h * w + 4 + 8 + 2 + (FLOAT_DIM * 4 if include_floats else 0)  # pixels, index columns, floats
    return len(_npy_header((n, h, w))) + n * per_frame + timeline_steps + 2**20  # + the JSON files, generously


def _check_free_space(tmp: Path, cache_dir: Path, needed: int) -> None:
    """Before anything is decoded: a disk that cannot hold the store ends the build with the numbers."""
    free = shutil.disk_usage(tmp).free
    if needed > free:
        raise DataError(
            cache_dir,
            f"not enough disk space: the frame store needs {needed / 1e6:.0f} MB, {free / 1e6:.0f} MB free on "
            f"{tmp.parent.resolve()}; free some or set data.cache_dir to another disk",
        )


def _index(replays: list[Replay], split: dict[str, str], root: Path):
    frame_replay, frame_time, frame_action = [], [], []
    timelines = []
    table = []
    frame_start = timeline_start = 0
    for rid, r in enumerate(replays):
        k = len(r.frame_files)
        frame_replay.append(np.full(k, rid, dtype=np.int32))
        frame_time.append(r.frame_times_ms)
        frame_action.append(r.frame_actions)
        tl = r.timeline if r.timeline is not None else np.zeros(0, dtype=np.int8)
        timelines.append(tl)
        table.append(
            {
                "replay": r.path.relative_to(root).as_posix(),
                "track_id": r.track_id,
                "replay_name": r.replay_name,
                "split": split[r.track_id],
                "frame_start": frame_start,
                "frame_count": k,
                "timeline_start": timeline_start,
                "timeline_len": len(tl),
                "step_ms": r.step_ms,
                "fps": r.metadata.get("fps"),
                "has_timeline": r.timeline is not None,
            }
        )
        frame_start += k
        timeline_start += len(tl)
    cols = {
        key: np.array([row[key] for row in table], dtype=np.int64)
        for key in ("frame_start", "frame_count", "timeline_start", "timeline_len", "step_ms")
    }
    index = {
        "frame_replay": np.concatenate(frame_replay),
        "frame_time_ms": np.concatenate(frame_time),
        "frame_action": np.concatenate(frame_action),
        "replay_split": np.array([SPLITS.index(row["split"]) for row in table], dtype=np.int8),
        **{f"replay_{key}": v for key, v in cols.items()},
    }
    return index, np.concatenate(timelines).astype(np.int8), table


# ------------------------------------------------------------------------------------------ reading

_REBUILD = "rebuild it with `dvc repro ingest`"
_FRAME_ARRAYS = ("frame_replay", "frame_time_ms", "frame_action")
_REPLAY_ARRAYS = tuple(
    f"replay_{k}" for k in ("split", "frame_start", "frame_count", "timeline_start", "timeline_len", "step_ms")
)


def _load_array(path: Path, **kwargs) -> np.ndarray:
    """One .npy of the store: a damaged, truncated or missing file is a DataError naming it (np.load raises
    ValueError, EOFError or OSError, depending on where the file ends)."""
    try:
        return np.load(path, allow_pickle=False, **kwargs)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"cannot be read as a frame store array ({exc}); {_REBUILD}") from None


def _load_index(path: Path, n_frames: int, n_replays: int) -> dict[str, np.ndarray]:
    """index.npz: every array the store needs, one entry per frame or per replay."""
    try:
        with np.load(path, allow_pickle=False) as index:
            missing = [name for name in (*_FRAME_ARRAYS, *_REPLAY_ARRAYS) if name not in index.files]
            arrays = {name: index[name] for name in (*_FRAME_ARRAYS, *_REPLAY_ARRAYS) if name not in missing}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # np.load takes what is not a zip archive (a cut-short one included) for a pickle, and says so
        reason = exc if not path.is_file() or zipfile.is_zipfile(path) else "not an .npz archive: damaged or cut short"
        raise DataError(path, f"cannot be read ({reason}); {_REBUILD}") from None
    if missing:
        raise DataError(path, f"has no array {', '.join(missing)}; {_REBUILD}")
    for names, n, what in ((_FRAME_ARRAYS, n_frames, "frames"), (_REPLAY_ARRAYS, n_replays, "replays")):
        for name in names:
            if arrays[name].shape != (n,):
                raise DataError(
                    path, f"{name} has shape {arrays[name].shape}, not one entry per {n} {what}; {_REBUILD}"
                )
    return arrays


def _check_ranges(cache_dir: Path, arrays: dict[str, np.ndarray], n_frames: int, n_steps: int) -> None:
    """Each replay's frames and timeline lie inside the store (else: wrong frames, or an IndexError mid-epoch)."""
    for kind, length, total, file in (
        ("frame", "count", n_frames, "frames.npy"),
        ("timeline", "len", n_steps, "timelines.npy"),
    ):
        start, count = arrays[f"replay_{kind}_start"], arrays[f"replay_{kind}_{length}"]
        outside = np.flatnonzero((start < 0) | (count < 0) | (start + count > total))
        if len(outside):
            raise DataError(
                cache_dir / "index.npz",
                f"replay {outside[0]}'s {kind}s lie outside {file} ({total} entries); {_REBUILD}",
            )


@dataclass
class FrameStore:
    """A built cache, opened read-only. `frames` is memory-mapped unless loaded with `in_memory=True`."""

    path: Path
    meta: dict
    frames: np.ndarray
    frame_replay: np.ndarray
    frame_time_ms: np.ndarray
    frame_action: np.ndarray
    replay_split: np.ndarray
    replay_frame_start: np.ndarray
    replay_frame_count: np.ndarray
    replay_timeline_start: np.ndarray
    replay_timeline_len: np.ndarray
    replay_step_ms: np.ndarray
    timelines: np.ndarray
    floats: np.ndarray | None

    @classmethod
    def open(cls, cache_dir: Path | str, in_memory: bool = False) -> FrameStore:
        cache_dir = Path(cache_dir)
        meta_path = cache_dir / "cache_meta.json"
        try:
            meta = json.loads(read_capped(meta_path, MAX_JSON_BYTES))
        except FileNotFoundError:
            raise DataError(
                cache_dir, "no complete replay cache here (cache_meta.json missing); run `dvc repro ingest`"
            ) from None
        except (OSError, ValueError) as exc:
            raise DataError(meta_path, f"cannot be read ({exc}); {_REBUILD}") from None
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version != FORMAT_VERSION or not meta.get("complete"):
            raise DataError(
                meta_path, f"cache format {_show(version)} is not {FORMAT_VERSION}; rebuild it with `dvc repro ingest`"
            )
        n_frames, n_replays = meta.get("n_frames"), meta.get("n_replays")
        if not all(type(n) is int and n >= 0 for n in (n_frames, n_replays)):
            raise DataError(meta_path, f"n_frames {_show(n_frames)}, n_replays {_show(n_replays)}: {_REBUILD}")
        frames = _load_array(cache_dir / "frames.npy", mmap_mode=None if in_memory else "r")
        if frames.ndim != 3 or len(frames) != n_frames:
            raise DataError(
                cache_dir / "frames.npy",
                f"holds frames of shape {frames.shape}, cache_meta.json says {n_frames} frames; {_REBUILD}",
            )
        arrays = _load_index(cache_dir / "index.npz", n_frames, n_replays)
        timelines = _load_array(cache_dir / "timelines.npy")
        _check_ranges(cache_dir, arrays, n_frames, len(timelines))
        floats_path = cache_dir / "floats.npy"
        floats = _load_array(floats_path, mmap_mode="r") if floats_path.is_file() else None
        if floats is not None and len(floats) != n_frames:
            raise DataError(
                floats_path, f"holds {len(floats)} rows, cache_meta.json says {n_frames} frames; {_REBUILD}"
            )
        return cls(path=cache_dir, meta=meta, frames=frames, timelines=timelines, floats=floats, **arrays)

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.frames.shape[1:])

    @property
    def content_hash(self) -> str:
        return self.meta["source"]["content_hash"]

    def replay_ids(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.replay_split == SPLITS.index(split))

    def timeline(self, replay_id: int) -> np.ndarray | None:
        if self.replay_timeline_len[replay_id] == 0:
            return None
        start = self.replay_timeline_start[replay_id]
        return self.timelines[start : start + self.replay_timeline_len[replay_id]]
