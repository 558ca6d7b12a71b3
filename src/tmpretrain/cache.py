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
an interrupted ingest never leaves a cache that looks valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .capture import Replay, decode_frame, discover_replays, read_replay
from .errors import DataError
from .params import DataParams

FORMAT_VERSION = 1
FLOAT_DIM = 184
SPLITS = ("train", "val")


# ------------------------------------------------------------------------------------------ decoding


@dataclass
class DecodedReplay:
    frames: np.ndarray  # uint8 (n, H, W) at the cache resolution
    file_hashes: list[tuple[str, str]]  # (path relative to the tree root, sha256) of every file read


def _resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    if frame.shape == (height, width):
        return frame
    # PIL's bilinear filter widens its support when shrinking, i.e. it antialiases.
    img = Image.fromarray(frame, mode="L").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decode_replay(replay: Replay, root: Path, height: int, width: int) -> DecodedReplay:
    """Decode, check and resize every frame of one replay. Raises DataError naming the first bad frame."""
    out = np.empty((len(replay.frame_files), height, width), dtype=np.uint8)
    expected_shape = (replay.height, replay.width) if replay.height and replay.width else None
    first_kind = None
    hashes = []
    for i, path in enumerate(replay.frame_files):
        frame, kind = decode_frame(path)
        if expected_shape is None:
            expected_shape = frame.shape
        if frame.shape != expected_shape:
            raise DataError(
                path,
                f"frame is {frame.shape[1]}x{frame.shape[0]} (WxH) but the replay's frames "
                f"are {expected_shape[1]}x{expected_shape[0]}",
            )
        if first_kind is None:
            first_kind = kind
        elif kind != first_kind:
            raise DataError(path, f"{kind} frame in a replay of {first_kind} frames")
        out[i] = _resize(frame, height, width)
        hashes.append((path.relative_to(root).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest()))
    return DecodedReplay(out, hashes)


def _decode_task(args):
    replay, root, height, width = args
    try:
        return decode_replay(replay, root, height, width)
    except DataError as exc:
        return exc


def float_vectors(replay: Replay) -> np.ndarray:
    """(n_frames, 184) race-state vectors: the numeric leaves of the latest `meta` snapshot at or before each
    frame (keys sorted, `time_ms` excluded), zero-padded or truncated to the agent's 184 floats."""
    out = np.zeros((len(replay.frame_times_ms), FLOAT_DIM), dtype=np.float32)
    snaps = [m for m in (replay.meta or []) if isinstance(m, dict) and isinstance(m.get("time_ms"), int | float)]
    if not snaps:
        return out
    times = np.array([m["time_ms"] for m in snaps])

    def leaves(obj):
        if isinstance(obj, bool):
            yield float(obj)
        elif isinstance(obj, int | float):
            yield float(obj) if math.isfinite(obj) else 0.0
        elif isinstance(obj, dict):
            for k in sorted(obj):
                if k != "time_ms":
                    yield from leaves(obj[k])
        elif isinstance(obj, list):
            for v in obj:
                yield from leaves(v)

    vectors = []
    for m in snaps:
        v = list(leaves(m))[:FLOAT_DIM]
        vectors.append(v + [0.0] * (FLOAT_DIM - len(v)))
    vectors = np.asarray(vectors, dtype=np.float32)
    pick = np.clip(np.searchsorted(times, replay.frame_times_ms, side="right") - 1, 0, len(snaps) - 1)
    return vectors[pick]


# ----------------------------------------------------------------------------------------- the split


def split_tracks(track_ids: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Train/val by track (adjacent frames of a replay are near duplicates, so a frame split would leak).
    Val = the first round(val_fraction * n) tracks of a seeded shuffle of the sorted ids (at least one)."""
    tracks = sorted(set(track_ids))
    if val_fraction <= 0:
        return dict.fromkeys(tracks, "train")
    if len(tracks) < 2:
        raise DataError(
            "data.replays_dir",
            f"a val split needs at least two tracks, found {len(tracks)} "
            f"({', '.join(tracks) or 'none'}); add tracks or set data.val_fraction: 0",
        )
    n_val = min(max(1, round(val_fraction * len(tracks))), len(tracks) - 1)
    order = np.random.default_rng(seed).permutation(len(tracks))
    val = {tracks[i] for i in order[:n_val]}
    return {t: ("val" if t in val else "train") for t in tracks}


# ------------------------------------------------------------------------------------------- ingest


def build_cache(params: DataParams, include_floats: bool = False, progress: bool = True) -> dict:
    """Read the capture tree `params.replays_dir` into a frame store at `params.cache_dir`. Returns the report.

    Bad replays are skipped and listed in the report, or stop the build when `params.strict` is set.
    """
    root = Path(params.replays_dir)
    cache_dir = Path(params.cache_dir)
    replay_dirs, problems = discover_replays(root)
    skipped: list[dict] = []

    def fail_or_skip(exc: DataError) -> None:
        if params.strict:
            raise exc
        skipped.append({"path": exc.path, "reason": exc.reason})

    for path, reason in problems:
        fail_or_skip(DataError(path, reason))

    replays: list[Replay] = []
    for d in replay_dirs:
        try:
            replays.append(read_replay(d))
        except DataError as exc:
            fail_or_skip(exc)
    if not replays:
        raise DataError(
            root,
            "no usable replays"
            + (f" ({len(skipped)} skipped, first: {skipped[0]['path']}: {skipped[0]['reason']})" if skipped else ""),
        )

    h, w = params.image_height, params.image_width
    tmp = cache_dir.with_name(cache_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_max = sum(len(r.frame_files) for r in replays)
    frames = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=np.uint8, shape=(n_max, h, w))

    kept: list[Replay] = []
    file_hashes: list[tuple[str, str]] = []
    n = 0
    tasks = [(r, root, h, w) for r in replays]
    pool = ProcessPoolExecutor(max_workers=params.workers) if params.workers > 1 else None
    with pool or contextlib.nullcontext():
        results = pool.map(_decode_task, tasks) if pool else map(_decode_task, tasks)
        for replay, result in tqdm(
            zip(replays, results, strict=True), total=len(replays), desc="ingest", unit="replay", disable=not progress
        ):
            if isinstance(result, DataError):
                fail_or_skip(result)
                continue
            k = len(result.frames)
            frames[n : n + k] = result.frames
            n += k
            kept.append(replay)
            file_hashes += result.file_hashes
    if not kept:
        raise DataError(
            root, f"every replay was skipped ({len(skipped)}); first: {skipped[0]['path']}: {skipped[0]['reason']}"
        )
    frames.flush()
    del frames
    if n < n_max:  # some replays were skipped while decoding: shrink to what was kept
        full = np.load(tmp / "frames.npy", mmap_mode="r")
        shrunk = np.lib.format.open_memmap(tmp / "frames.tmp.npy", mode="w+", dtype=np.uint8, shape=(n, h, w))
        shrunk[:] = full[:n]
        shrunk.flush()
        del full, shrunk
        os.replace(tmp / "frames.tmp.npy", tmp / "frames.npy")

    split = split_tracks([r.track_id for r in kept], params.val_fraction, params.split_seed)
    for r in kept:
        for name in ("manifest.json", "metadata.json"):
            if (r.path / name).is_file():
                file_hashes.append(((r.path / name).relative_to(root).as_posix(), _sha256(r.path / name)))
    content_hash = hashlib.sha256("\n".join(f"{p}\t{s}" for p, s in sorted(file_hashes)).encode()).hexdigest()

    index, timelines, table = _index(kept, split, root)
    np.savez(tmp / "index.npz", **index)
    np.save(tmp / "timelines.npy", timelines)
    if include_floats:
        np.save(tmp / "floats.npy", np.concatenate([float_vectors(r) for r in kept]))

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
            "train_tracks": sorted(t for t, s in split.items() if s == "train"),
            "val_tracks": sorted(t for t, s in split.items() if s == "val"),
        },
        "n_frames": int(n),
        "n_replays": len(kept),
        "label_fallback_replays": fallback,
        "replays": table,
    }
    _write_json(tmp / "ingest_report.json", report)
    _write_json(tmp / "cache_meta.json", meta)  # last: its presence marks a complete cache
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    os.replace(tmp, cache_dir)
    return report


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


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ reading


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
        if not meta_path.is_file():
            raise DataError(
                cache_dir, "no complete replay cache here (cache_meta.json missing); run `dvc repro ingest`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION or not meta.get("complete"):
            raise DataError(
                meta_path,
                f"cache format {meta.get('format_version')} is not {FORMAT_VERSION}; "
                "rebuild it with `dvc repro ingest`",
            )
        frames = np.load(cache_dir / "frames.npy", mmap_mode=None if in_memory else "r")
        if len(frames) != meta["n_frames"]:
            raise DataError(
                cache_dir / "frames.npy",
                f"holds {len(frames)} frames, cache_meta.json says {meta['n_frames']}; rebuild with `dvc repro ingest`",
            )
        with np.load(cache_dir / "index.npz") as index:
            arrays = {k: index[k] for k in index.files}
        floats_path = cache_dir / "floats.npy"
        return cls(
            path=cache_dir,
            meta=meta,
            frames=frames,
            timelines=np.load(cache_dir / "timelines.npy"),
            floats=np.load(floats_path, mmap_mode="r") if floats_path.is_file() else None,
            **arrays,
        )

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
