"""Property-based fuzzing of a replay's manifest.json and metadata.json (Hypothesis).

Each example mutates a valid replay (types, NaN, huge and negative numbers, missing and extra keys, nesting, path
tricks, links) and ingests it beside two valid tracks. The labels ingest stores must equal those of the
independent reference below, or the replay must be refused with a reason naming a file of it; never another
exception, and never a file opened outside the replay's directory (an audit hook watches every `open`).

CI runs 30 examples; many more: HYPOTHESIS_PROFILE=thorough pytest tests/test_fuzz_capture.py (docs/reliability.md).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tmpretrain.capture import write_replay
from tmpretrain.frame_store import FrameStore, build_frame_store
from tmpretrain.params import DataParams
from tmpretrain.windows import replay_labels

_SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=30, **_SETTINGS)
settings.register_profile("thorough", max_examples=3000, **_SETTINGS)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SIZE = 8  # frames are SIZE x SIZE gray PNGs
TIMES = [0, 100, 200, 300, 400, 500]
OFFSETS = [-10, 0, 10, 35, 100]
ABSENT = object()  # a key (or metadata.json itself) removed
DEEP = "__DEEP__"  # written as JSON nested 100000 deep: no parser takes it

# ------------------------------------------------------------------------------------- what is opened

_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _opened.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_audit)  # cannot be removed: it records only while a test sets _opened

# ------------------------------------------------------------------------------------- the reference


def ref_int(value, lo: int, hi: int):
    if type(value) is float and math.isfinite(value) and value == math.floor(value):
        value = int(value)
    return value if type(value) is int and lo <= value <= hi else None


def ref_frame_key(name, replay: str, plain: set[str]):
    """The file a manifest name stands for (its path inside the replay), or None when ingest must refuse it."""
    if type(name) is not str:
        return None
    if name not in plain:
        if name == "" or "\x00" in name or name.startswith(("/", "\\")) or name[1:2] == ":":
            return None
        try:
            name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return None
        if ".." in name.replace("\\", "/").split("/"):
            return None
    real = os.path.realpath(os.path.join(replay, name))
    inside = os.path.realpath(replay)
    if not os.path.isfile(real) or os.path.commonpath([real, inside]) != inside:
        return None
    if os.path.splitext(real)[1].lower() not in (".jpeg", ".jpg", ".png", ".bmp", ".npy"):
        return None
    return os.path.relpath(real, inside)


def ref_leaves(obj, out: list) -> None:
    if type(obj) in (bool, int, float):
        out.append(obj)
    elif type(obj) is dict:
        for key in sorted(obj):
            if key != "time_ms":
                ref_leaves(obj[key], out)
    elif type(obj) is list:
        for value in obj:
            ref_leaves(value, out)


def ref_float32(x) -> bool:
    if type(x) is int and abs(x) > 1e300:
        return False
    with warnings.catch_warnings(), np.errstate(over="ignore"):
        warnings.simplefilter("ignore")
        return bool(np.isfinite(np.float32(float(x))))


def reference(manifest, metadata, replay: str, plain: set[str]):
    """What ingest must store for this replay: (times, entry actions, timeline, step_ms), or None (refused)."""
    if isinstance(manifest, list):
        entries, actions, meta = manifest, None, None
    elif isinstance(manifest, dict) and type(manifest.get("entries")) is list:
        entries, actions, meta = manifest["entries"], manifest.get("actions"), manifest.get("meta")
    else:
        return None
    if metadata is ABSENT:
        metadata = {}
    if type(metadata) is not dict or not entries:
        return None
    step = ref_int(metadata.get("step_ms", 10), 1, 1000)
    fps = metadata.get("fps")
    if step is None or (fps is not None and not (type(fps) in (int, float) and 0 < fps <= 1000)):
        return None
    dims = [metadata.get(key) for key in ("width", "height")]
    dims = [None if d is None else ref_int(d, 1, 8192) or "bad" for d in dims]
    if "bad" in dims or (dims[0] and dims[1] and dims != [SIZE, SIZE]):
        return None
    times, entry_actions, keys = [], [], set()
    for e in entries:
        if type(e) is not dict or "file" not in e or "time_ms" not in e:
            return None
        t = ref_int(e["time_ms"], 0, 24 * 3600 * 1000)
        key = ref_frame_key(e["file"], replay, plain)
        a = -1 if e.get("action_idx") is None else ref_int(e["action_idx"], 0, 11)
        if t is None or (times and t <= times[-1]) or key is None or key in keys or a is None:
            return None
        times.append(t)
        entry_actions.append(a)
        keys.add(key)
    timeline = None
    if actions is not None:
        if type(actions) is not list or any(ref_int(a, 0, 11) is None for a in actions):
            return None
        timeline = [ref_int(a, 0, 11) for a in actions] or None
    # Label sanity: the frames' median spacing within 25 % of 1000 / fps; at least half the frames on the timeline;
    if fps is not None and len(times) >= 2:
        spacing = statistics.median(b - a for a, b in zip(times, times[1:], strict=False))
        if abs(spacing - 1000.0 / fps) > 0.25 * 1000.0 / fps:
            return None
    if timeline is not None and 2 * sum(t < len(timeline) * step for t in times) < len(times):
        return None
    # ... and no shift of the frame clock within 10 s explains the entries' own actions (action_idx) by 0.25 more
    # of them than their time stamps do, judged on at least 5 frames (and half of them at the shift).
    judged = [(t, a) for t, a in zip(times, entry_actions, strict=True) if a >= 0]
    if timeline is not None and len(judged) >= 5:

        def share(shift: int) -> tuple[float, int]:
            ks = [(math.floor(t / step + 0.5) + shift, a) for t, a in judged]
            hits = [timeline[k] == a for k, a in ks if 0 <= k < len(timeline)]
            return (sum(hits) / len(hits) if hits else 0.0), len(hits)

        own = share(0)[0]
        reach = min(10_000 // step, len(timeline))
        shifted = [share(d) for d in range(-reach, reach + 1)]
        if max([own] + [x for x, n in shifted if n >= 5 and 2 * n >= len(judged)]) - own >= 0.25:
            return None
    if meta is not None:
        if type(meta) is not list:
            return None
        last = None
        for snapshot in meta:
            t = snapshot.get("time_ms") if type(snapshot) is dict else None
            if type(t) not in (int, float) or not -86_400_000 <= t <= 86_400_000 or (last is not None and t <= last):
                return None
            last = t
            leaves: list = []
            ref_leaves(snapshot, leaves)
            if not all(ref_float32(x) for x in leaves[:184]):
                return None
    return times, entry_actions, timeline, step


def ref_labels(times, entry_actions, timeline, step) -> list[list[int]]:
    rows = []
    for t in times:
        row = []
        for d in OFFSETS:
            if timeline is not None:
                k = math.floor((t + d) / step + 0.5)
                row.append(timeline[k] if 0 <= k < len(timeline) else -1)
            elif times[0] <= t + d <= times[-1]:
                nearest = min(range(len(times)), key=lambda j: (abs(times[j] - (t + d)), j))
                row.append(entry_actions[nearest])
            else:
                row.append(-1)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------- mutations

scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 3, 5, 10, 10.0, 11, 12, 20, 25, 100, 1000, 1001, 0.5, 3.0, -1, 300.0, 2**70, 1e300]),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
)
values = st.one_of(
    scalars,
    st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=6,
    ),
    st.just(DEEP),
    st.just(ABSENT),
)
path_tricks = st.sampled_from(
    [
        "../../decoy/unfinished.replay/frame_00000_0ms.png",
        "{outside}",
        "./{own}",
        "sub/../{own}",
        "{other}",
        "missing.png",
        "\ud800.png",
        "frame\x00.png",
        "",
        "metadata.json",
        "copies/{own}",
    ]
)
links = st.sampled_from(["outside", "decoy", "inside copy"])
entry_keys = st.sampled_from(["time_ms", "file", "action_idx", "extra"])
metadata_keys = st.sampled_from(["step_ms", "fps", "width", "height", "extra"])
index = st.integers(0, len(TIMES) - 1)

mutation = st.one_of(
    st.tuples(st.just("metadata"), metadata_keys, values | st.sampled_from([5, 20, 25, 7])),
    st.tuples(st.just("entry"), index, entry_keys, values),
    st.tuples(st.just("file"), index, path_tricks),
    st.tuples(st.just("shift time"), index, st.integers(-150, 150)),
    st.tuples(st.just("action"), st.integers(0, 60), values),
    st.tuples(st.just("truncate timeline"), st.integers(0, 60)),
    st.tuples(st.just("meta"), st.integers(0, len(TIMES) - 1), st.sampled_from(["time_ms", "speed", "pos"]), values),
    st.tuples(
        st.just("top"), st.sampled_from(["entries", "actions", "meta", "manifest", "metadata", "entry"]), index, values
    ),
    st.tuples(
        st.just("legacy"),
    ),
    st.tuples(st.just("link"), index, links),
)


def apply(m: tuple, manifest, metadata, replay: Path, base: Path):
    """One mutation: returns the new (manifest, metadata); links and copies are made on disk."""
    kind = m[0]

    def put(container, key, value):
        if value is ABSENT:
            if isinstance(container, dict):
                container.pop(key, None)
            elif isinstance(container, list) and key < len(container):
                del container[key]
        elif isinstance(container, dict) or (isinstance(container, list) and key < len(container)):
            container[key] = value

    entries = manifest.get("entries") if isinstance(manifest, dict) else manifest
    entries = entries if isinstance(entries, list) else []
    if kind == "metadata" and isinstance(metadata, dict):
        put(metadata, m[1], m[2])
    elif kind == "entry" and m[1] < len(entries) and isinstance(entries[m[1]], dict):
        put(entries[m[1]], m[2], m[3])
    elif kind == "file" and m[1] < len(entries) and isinstance(entries[m[1]], dict):
        own = entries[m[1]].get("file")
        own = own if isinstance(own, str) else "x.png"
        if m[2] == "copies/{own}" and own in {p.name for p in replay.iterdir() if p.is_file()}:
            (replay / "copies").mkdir(exist_ok=True)
            shutil.copy(replay / own, replay / "copies" / own)
        other = sorted(p.name for p in replay.glob("frame_*"))[(m[1] + 1) % len(TIMES)]
        outside = str(base / "outside" / "secret.png")
        entries[m[1]]["file"] = m[2].format(own=own, other=other, outside=outside)
    elif kind == "shift time" and m[1] < len(entries) and isinstance(entries[m[1]], dict):
        t = entries[m[1]].get("time_ms")
        if type(t) is int:
            entries[m[1]]["time_ms"] = t + m[2]
    elif kind == "action" and isinstance(manifest, dict) and isinstance(manifest.get("actions"), list):
        put(manifest["actions"], m[1], m[2])
    elif kind == "truncate timeline" and isinstance(manifest, dict) and isinstance(manifest.get("actions"), list):
        manifest["actions"] = manifest["actions"][: m[1]]
    elif kind == "meta" and isinstance(manifest, dict) and isinstance(manifest.get("meta"), list):
        snapshots = manifest["meta"]
        if m[1] < len(snapshots) and isinstance(snapshots[m[1]], dict):
            put(snapshots[m[1]], m[2], m[3])
    elif kind == "top":
        what, k, value = m[1], m[2], m[3]
        if what == "manifest":
            return (ABSENT_MANIFEST_TEXT if value is ABSENT else value), metadata
        if what == "metadata":
            return manifest, value
        if what == "entry":
            put(entries, k, value)
        elif isinstance(manifest, dict):
            put(manifest, what, value)
    elif kind == "legacy" and isinstance(manifest, dict) and isinstance(manifest.get("entries"), list):
        return manifest["entries"], metadata
    elif kind == "link":
        frames = sorted(p for p in replay.glob("frame_*") if p.is_file() and not p.is_symlink())
        if m[1] < len(frames):
            frame = frames[m[1]]
            target = {
                "outside": base / "outside" / "secret.png",
                "decoy": base / "replays" / "decoy" / "unfinished.replay" / "frame_00000_0ms.png",
                "inside copy": replay / "copies" / frame.name,
            }[m[2]]
            if m[2] == "inside copy":
                target.parent.mkdir(exist_ok=True)
                shutil.copy(frame, target)
            frame.unlink()
            frame.symlink_to(target)
    return manifest, metadata


ABSENT_MANIFEST_TEXT = "{"  # a manifest.json that does not parse


DEEP_TEXT = "[" * 100_000 + "]" * 100_000


def _dump(obj) -> str:
    return json.dumps(obj).replace(json.dumps(DEEP), DEEP_TEXT)


# ------------------------------------------------------------------------------------- the property


def _write_valid(replay: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    timeline = rng.integers(0, 12, size=51)
    frames = [rng.integers(0, 256, size=(SIZE, SIZE)).astype(np.uint8) for _ in TIMES]
    meta = [{"time_ms": t, "speed": float(t) / 7, "pos": [t, 1.5]} for t in TIMES]
    write_replay(replay, frames, TIMES, timeline, fps=10, meta=meta, ext=".png")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Two valid tracks, a decoy (an unfinished capture: never read) and a sentinel outside the tree."""
    base = tmp_path_factory.mktemp("template")
    _write_valid(base / "replays" / "B" / "r.replay", 1)
    _write_valid(base / "replays" / "C" / "r.replay", 2)
    _write_valid(base / "replays" / "decoy" / "unfinished.replay", 3)
    (base / "replays" / "decoy" / "unfinished.replay" / "manifest.json").unlink()
    (base / "outside").mkdir()
    shutil.copy(base / "replays" / "B" / "r.replay" / "frame_00000_0ms.png", base / "outside" / "secret.png")
    return base


@settings(PROFILE)
@given(mutations=st.lists(mutation, min_size=1, max_size=3), seed=st.integers(0, 3))
def test_mutated_replay_is_labelled_like_the_reference_or_refused(tmp_path, template, mutations, seed):
    global _opened
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    shutil.copytree(template, base, dirs_exist_ok=True, symlinks=True)
    replay = base / "replays" / "A" / "r.replay"
    _write_valid(replay, 10 + seed)
    manifest = json.loads((replay / "manifest.json").read_text())
    metadata = json.loads((replay / "metadata.json").read_text())
    for m in mutations:
        manifest, metadata = apply(m, manifest, metadata, replay, base)
    texts = [manifest if isinstance(manifest, str) else _dump(manifest)]
    (replay / "manifest.json").write_text(texts[0])
    if metadata is ABSENT:
        (replay / "metadata.json").unlink()
    else:
        texts.append(_dump(metadata))
        (replay / "metadata.json").write_text(texts[1])
    plain = {p.name for p in replay.iterdir() if p.is_file() and not p.is_symlink()}
    unparsable = isinstance(manifest, str) or any(DEEP_TEXT in text for text in texts)
    expected = None if unparsable else reference(manifest, metadata, str(replay), plain)

    params = DataParams(
        replays_dir=str(base / "replays"),
        cache_dir=str(base / "cache"),
        image_height=SIZE,
        image_width=SIZE,
        val_fraction=0.34,
        test_fraction=0.0,  # a tree of 2-3 tracks: train and val
        include_floats=True,
        workers=1,  # in this process, where the audit hook sees every open
    )
    _opened = []
    try:
        report = build_frame_store(params, progress=False)
    finally:
        opened, _opened = _opened, None
    forbidden = [str((base / "outside").resolve()), str((base / "replays" / "decoy").resolve())]
    assert not [p for p in opened if any(p.startswith(f + os.sep) for f in forbidden)], mutations

    store = FrameStore.open(base / "cache")
    rows = {row["replay"]: rid for rid, row in enumerate(store.meta["replays"])}
    assert {"B/r.replay", "C/r.replay"} <= set(rows)
    skipped = [s["path"] for s in report["skipped"] if not s["path"].startswith(str(base / "replays" / "decoy"))]
    event("refused" if expected is None else "stored")
    if expected is None:
        assert "A/r.replay" not in rows, mutations
        assert len(skipped) == 1 and (skipped[0] + os.sep).startswith(str(replay) + os.sep), (mutations, skipped)
    else:
        assert skipped == [], (mutations, report["skipped"])
        times, entry_actions, timeline, step = expected
        rid = rows["A/r.replay"]
        s, c = store.replay_frame_start[rid], store.replay_frame_count[rid]
        assert store.frame_time_ms[s : s + c].tolist() == times
        assert replay_labels(store, rid, OFFSETS, "current_tick").tolist() == ref_labels(*expected), mutations
        assert int(store.replay_step_ms[rid]) == step
