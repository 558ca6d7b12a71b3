"""Training samples as index arrays into the frame store: stacked-frame windows and time-offset labels.

A sample is a frame at time T of one replay. Its window is the indices of the n_stack frames ending at that frame
(the first frame of a replay repeats where the replay has no earlier frame, so every n_stack sees the same samples).
Its label at offset d ms is the action held at T + d on the replay's 10 ms timeline, `timeline[round((T + d) /
step_ms)]`; `next_tick` shifts every offset by one step. A position past either end of the timeline is masked
(-1), never clamped. A replay without a timeline falls back to the frame entry nearest in time (flagged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frame_store import FrameStore

MASKED = -1
TARGETS = ("current_tick", "next_tick")


@dataclass
class Samples:
    windows: np.ndarray  # int64 (M, n_stack): frame-store indices, oldest first, the sample's own frame last
    labels: np.ndarray  # int64 (M, n_offsets): action ids, MASKED where the offset leaves the replay
    replay: np.ndarray  # int32 (M,): replay id of each sample
    time_ms: np.ndarray  # int64 (M,): time of each sample's frame
    fallback: np.ndarray  # bool (M,): labels come from frame entries, not the action timeline

    def __len__(self) -> int:
        return len(self.windows)


def round_half_up(x: np.ndarray) -> np.ndarray:
    """round() as people mean it (numpy rounds halves to even: 0.5 -> 0, which would skew +5 ms offsets)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def timeline_labels(timeline: np.ndarray, times_ms: np.ndarray, offset_ms: int, step_ms: int) -> np.ndarray:
    """The action at T + offset on the timeline, MASKED past either end."""
    k = round_half_up((times_ms + offset_ms) / step_ms)
    inside = (k >= 0) & (k < len(timeline))
    return np.where(inside, timeline[np.clip(k, 0, len(timeline) - 1)].astype(np.int64), MASKED)


def nearest_entry_labels(entry_actions: np.ndarray, times_ms: np.ndarray, offset_ms: int) -> np.ndarray:
    """Fallback without a timeline: the action of the frame entry nearest to T + offset, MASKED outside the
    captured interval. At low fps this makes small offsets (0 vs +10 ms) identical, hence the flag."""
    target = times_ms + offset_ms
    right = (
        np.clip(np.searchsorted(times_ms, target), 1, len(times_ms) - 1)
        if len(times_ms) > 1
        else np.zeros(len(target), dtype=np.int64)
    )
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(times_ms[right] - target) < np.abs(target - times_ms[left]), right, left)
    inside = (target >= times_ms[0]) & (target <= times_ms[-1])
    return np.where(inside, entry_actions[nearest].astype(np.int64), MASKED)


def replay_windows(frame_start: int, frame_count: int, n_stack: int) -> np.ndarray:
    """(frame_count, n_stack) store indices; positions before the replay's first frame repeat that frame."""
    own = np.arange(frame_count)[:, None] + np.arange(-(n_stack - 1), 1)[None, :]
    return frame_start + np.maximum(own, 0)


def replay_labels(store: FrameStore, replay_id: int, offsets_ms: list[int], target: str) -> np.ndarray:
    """(frame_count, n_offsets) labels of every frame of one replay."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    start, count = int(store.replay_frame_start[replay_id]), int(store.replay_frame_count[replay_id])
    step_ms = int(store.replay_step_ms[replay_id])
    shift = step_ms if target == "next_tick" else 0
    times = store.frame_time_ms[start : start + count]
    timeline = store.timeline(replay_id)
    if timeline is not None:
        labels = [timeline_labels(timeline, times, d + shift, step_ms) for d in offsets_ms]
    else:
        entry_actions = store.frame_action[start : start + count]
        labels = [nearest_entry_labels(entry_actions, times, d + shift) for d in offsets_ms]
    return np.stack(labels, axis=1)


def build_samples(
    store: FrameStore, split: str, n_stack: int, offsets_ms: list[int], target: str = "current_tick"
) -> Samples:
    """Every frame of the split's replays with at least one unmasked label."""
    parts = []
    for rid in store.replay_ids(split):
        start, count = int(store.replay_frame_start[rid]), int(store.replay_frame_count[rid])
        parts.append(
            (
                replay_windows(start, count, n_stack),
                replay_labels(store, rid, offsets_ms, target),
                np.full(count, rid, dtype=np.int32),
                store.frame_time_ms[start : start + count],
                np.full(count, store.timeline(rid) is None),
            )
        )
    if not parts:
        raise ValueError(f"the cache has no {split} replays")
    windows, labels, replay, times, fallback = (np.concatenate(p) for p in zip(*parts, strict=True))
    keep = (labels != MASKED).any(axis=1)
    return Samples(windows[keep], labels[keep], replay[keep], times[keep], fallback[keep])


def label_timing_report(store: FrameStore, samples: Samples, offsets_ms: list[int], target: str) -> dict:
    """Per offset: how often its label differs from the action held at the frame itself (0 ms, current tick) on
    samples where both exist, and how many labels are masked; plus how many samples fall back to frame entries.
    Identical 0 / +10 ms labels are the symptom of frame-based labels at low fps that the original study warned
    about."""
    reference = np.full(len(samples), MASKED, dtype=np.int64)
    for rid in np.unique(samples.replay):
        rows = np.flatnonzero(samples.replay == rid)
        own_frame = samples.windows[rows, -1] - store.replay_frame_start[rid]
        reference[rows] = replay_labels(store, int(rid), [0], "current_tick")[own_frame, 0]
    report = {
        "target": target,
        "n_samples": len(samples),
        "n_fallback_samples": int(samples.fallback.sum()),
        "offsets": {},
    }
    for j, d in enumerate(offsets_ms):
        col = samples.labels[:, j]
        both = (col != MASKED) & (reference != MASKED)
        report["offsets"][str(d)] = {
            "masked": int((col == MASKED).sum()),
            "differs_from_0ms": float((col[both] != reference[both]).mean()) if both.any() else None,
        }
    return report
