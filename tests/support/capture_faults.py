"""The hostile-capture corpus: replays that each break one ingest rule, planted into a real capture tree, and a
runner that ingests them the way a user does (data.workers 2) and records the answer to each.

    hostile_replays() -> list[FaultCase]        the corpus, shared by the tests and the fault table
    run_ingest_faults(tmpdir) -> list[dict]     one row per case: fault_class, variant, outcome, traceback,
                                                wrong_result, outputs_lost, detail (for `tmpretrain faults`)

A case's `plant` turns the valid replay it is given into the hostile one (or adds a hostile link beside it) and
returns the path the answer must name. The expected answer: with data.strict false the replay is skipped and
listed in ingest_report.json with that path, every other replay is stored exactly as from a clean tree; with
data.strict true ingest stops with one line naming that path and the previous cache stays as it was. Cases with
`keeps_replay` are refused links *to* the replay: the replay itself is still read, once.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from support.judges import judge_ingest
from tmpretrain.capture import MAX_FRAME_PIXELS, MAX_JSON_BYTES
from tmpretrain.errors import PretrainError

PLANTED = "track01/pos0_bench_1000ms.replay"  # where run_ingest_faults plants each case (a "scene" tree's names)


@dataclass(frozen=True)
class FaultCase:
    fault_class: str  # path containment | numbers | decode | json | types | layout | labels
    variant: str
    plant: Callable[[Path], Path | None]  # valid replay dir -> the path the answer must name (None: nothing to report)
    keeps_replay: bool = False  # the planted replay itself is still stored (the refused thing is a link to it)

    @property
    def id(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in f"{self.fault_class} {self.variant}").strip("_")


# ------------------------------------------------------------------------------------------ planting


def _frames(replay: Path) -> list[Path]:
    return sorted(p for p in replay.iterdir() if p.name.startswith("frame_"))


def _other_replay(replay: Path) -> Path:
    """A valid replay of another track (for references that would leak a frame across the split)."""
    root = replay.parent.parent
    return next(r for t in sorted(root.iterdir()) if t != replay.parent for r in sorted(t.iterdir()) if r.is_dir())


def _outside(replay: Path) -> Path:
    """A directory beside the capture tree (outside it), holding a copy of a real frame and manifest."""
    out = replay.parent.parent.parent / "outside_the_tree"
    out.mkdir(exist_ok=True)
    shutil.copy(_frames(replay)[0], out / "secret.jpeg")
    shutil.copy(replay / "manifest.json", out / "manifest.json")
    return out


def _json(path: Path, edit: Callable[[object], object]) -> Path:
    """Edit a JSON file in place (`edit` changes the object; what it returns is ignored)."""
    obj = json.loads(path.read_text(encoding="utf-8"))
    edit(obj)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def manifest(edit: Callable[[object], object]) -> Callable[[Path], Path]:
    return lambda r: _json(r / "manifest.json", edit)


def metadata(key: str, value) -> Callable[[Path], Path]:
    return lambda r: _json(r / "metadata.json", lambda m: m.__setitem__(key, value))


def entry(k: int, key: str, value) -> Callable[[Path], Path]:
    return manifest(lambda m: m["entries"][k].__setitem__(key, value))


def entry_file(k: int, name_of: Callable[[Path], str]) -> Callable[[Path], Path]:
    """entries[k].file = name_of(replay dir)."""

    def plant(r: Path) -> Path:
        name = name_of(r)
        return _json(r / "manifest.json", lambda m: m["entries"][k].__setitem__("file", name))

    return plant


def frame_bytes(make: Callable[[bytes], bytes], k: int = 3) -> Callable[[Path], Path]:
    def plant(r: Path) -> Path:
        f = _frames(r)[k]
        f.write_bytes(make(f.read_bytes()))
        return f

    return plant


def raw_bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def plant(r: Path) -> Path:
        (r / name).write_bytes(data)
        return r / name

    return plant


def raw_text(name: str, text: str) -> Callable[[Path], Path]:
    return raw_bytes(name, text.encode("utf-8"))


def _declared_width(width: int) -> Callable[[Path], Path]:
    """metadata.json declares a width the frames do not have: the first frame is named, against the metadata."""

    def plant(r: Path) -> Path:
        metadata("width", width)(r)
        return _frames(r)[0]

    return plant


def _unsupported_extension(r: Path) -> Path:
    _json(r / "manifest.json", lambda m: m["entries"][3].__setitem__("file", "metadata.json"))
    return r / "metadata.json"


def _png(width: int, height: int) -> bytes:
    """A valid PNG header (signature, IHDR, an empty IDAT, IEND) for an 8-bit gray image of any claimed size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


_GRAY_24 = np.full((24, 24), 128, np.uint8)  # a frame of the planted replay's size: only the file format is wrong


def _image(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy file whose header claims `shape` (uint8) followed by a few bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue() + bytes(64)


def npy_frame(make: Callable[[], bytes]) -> Callable[[Path], Path]:
    """Replace frame 3 by a .npy file (and its manifest entry)."""

    def plant(r: Path) -> Path:
        f = _frames(r)[3]
        npy = f.with_suffix(".npy")
        f.unlink()
        npy.write_bytes(make())
        _json(r / "manifest.json", lambda m: m["entries"][3].__setitem__("file", npy.name))
        return npy

    return plant


def _link(link: Path, target: Path) -> Path:
    if link.is_file():
        link.unlink()
    os.symlink(target, link, target_is_directory=target.is_dir())
    return link


def _swap(k: int, j: int) -> Callable[[object], None]:
    def edit(m):
        a, b = m["entries"][k], m["entries"][j]
        a["time_ms"], b["time_ms"] = b["time_ms"], a["time_ms"]

    return edit


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _key_twice(name: str, key: str, first: object) -> Callable[[Path], Path]:
    """`key` written twice in the first object that has it, `first` before the real value (Python's json would keep
    the real one, other readers the first)."""

    def plant(r: Path) -> Path:
        path = r / name
        text = json.dumps(json.loads(path.read_text(encoding="utf-8")))
        path.write_text(text.replace(f'"{key}": ', f'"{key}": {json.dumps(first)}, "{key}": ', 1), encoding="utf-8")
        return path

    return plant


def _too_large(r: Path) -> Path:
    path = r / "manifest.json"
    with open(path, "r+b") as f:  # sparse where the file system allows: no real disk use
        f.truncate(MAX_JSON_BYTES + 1)
    return path


def _missing(k: int) -> Callable[[Path], Path]:
    def plant(r: Path) -> Path:
        f = _frames(r)[k]
        f.unlink()
        return f

    return plant


def _no_frames(r: Path) -> Path:
    first = json.loads((r / "manifest.json").read_text(encoding="utf-8"))["entries"][0]["file"]
    for f in _frames(r):
        f.unlink()
    return r / first


def _no_manifest(r: Path) -> Path:
    (r / "manifest.json").unlink()
    return r


def _empty_track(r: Path) -> Path:
    track = r.parent.parent / "track_empty"
    track.mkdir()
    return track


def _alias_track(r: Path) -> Path:
    return _link(r.parent.parent / (r.parent.name + "_alias"), r.parent)


def _alias_replay(r: Path) -> Path:
    return _link(_other_replay(r).parent / "linked.replay", r)


def _loop(r: Path) -> Path:
    return _link(r.parent / "loop", r.parent)


def _replay_outside(r: Path) -> Path:
    outside = _outside(r) / "escaped.replay"
    shutil.copytree(r, outside)
    return _link(r.parent / "escaped.replay", outside)


def _inside_link(r: Path) -> None:
    """A frame that is a link to a copy inside its own replay directory: allowed, read once."""
    f = _frames(r)[3]
    copy = r / "copies" / f.name
    copy.parent.mkdir()
    shutil.copy(f, copy)
    _link(f, copy)
    return None


def _frame_link(target_of: Callable[[Path], Path]) -> Callable[[Path], Path]:
    return lambda r: _link(_frames(r)[3], target_of(r))


def _frame_name(r: Path, k: int = 3) -> str:
    return _frames(r)[k].name


def _shift_clock(ms: int) -> Callable[[Path], Path]:
    """Every frame's time_ms moved by `ms`, the action timeline left where it was."""
    return manifest(lambda m: [e.__setitem__("time_ms", e["time_ms"] + ms) for e in m["entries"]])


def _cut_timeline(fraction: int) -> Callable[[object], None]:
    return lambda m: m.__setitem__("actions", m["actions"][: len(m["actions"]) // fraction])


def _delay_timeline(steps: int) -> Callable[[object], None]:
    return lambda m: m.__setitem__("actions", m["actions"][:1] * steps + m["actions"])


def hostile_replays() -> list[FaultCase]:
    """Every case of the corpus, each planted into a valid replay (see the module docstring)."""
    other = _other_replay
    return [
        # path containment: nothing outside the replay's own directory is read, no directory twice
        FaultCase(
            "path containment",
            "entry file '../' into another track (val frame into train)",
            entry_file(3, lambda r: f"../../{other(r).parent.name}/{other(r).name}/{_frame_name(other(r))}"),
        ),
        FaultCase(
            "path containment",
            "entry file is an absolute path outside the tree",
            entry_file(3, lambda r: str((_outside(r) / "secret.jpeg").resolve())),
        ),
        FaultCase(
            "path containment",
            "entry file 'sub/../frame' ('..' even when it stays inside)",
            entry_file(3, lambda r: f"sub/../{_frame_name(r)}"),
        ),
        FaultCase(
            "path containment", "frame is a link to another track's frame", _frame_link(lambda r: _frames(other(r))[3])
        ),
        FaultCase(
            "path containment", "frame is a link outside the tree", _frame_link(lambda r: _outside(r) / "secret.jpeg")
        ),
        FaultCase(
            "path containment",
            "manifest.json is a link outside the tree",
            lambda r: _link(r / "manifest.json", _outside(r) / "manifest.json"),
        ),
        FaultCase(
            "path containment",
            "metadata.json is a link to another replay's",
            lambda r: _link(r / "metadata.json", other(r) / "metadata.json"),
        ),
        FaultCase("path containment", "replay directory is a link outside the tree", _replay_outside, True),
        FaultCase("path containment", "track directory is an alias of another track", _alias_track, True),
        FaultCase("path containment", "replay directory is an alias of a replay in another track", _alias_replay, True),
        FaultCase("path containment", "link loop back to its own track", _loop, True),
        FaultCase("path containment", "frame is a link to a file inside its replay (allowed)", _inside_link, True),
        FaultCase(
            "path containment",
            "entry file names the same frame twice ('./' spelling)",
            entry_file(4, lambda r: f"./{_frame_name(r, 3)}"),
        ),
        # numbers: each value is what it claims, never rounded, truncated or clamped into another
        FaultCase("numbers", "step_ms 0", metadata("step_ms", 0)),
        FaultCase("numbers", "step_ms 0.5 (fraction)", metadata("step_ms", 0.5)),
        FaultCase("numbers", "step_ms NaN", metadata("step_ms", float("nan"))),
        FaultCase("numbers", "step_ms inf", metadata("step_ms", float("inf"))),
        FaultCase("numbers", "step_ms true", metadata("step_ms", True)),
        FaultCase("numbers", "step_ms -10", metadata("step_ms", -10)),
        FaultCase("numbers", "step_ms 1e9", metadata("step_ms", 10**9)),
        FaultCase("numbers", "time_ms NaN", entry(2, "time_ms", float("nan"))),
        FaultCase("numbers", "time_ms 1e300", entry(7, "time_ms", 1e300)),
        FaultCase("numbers", "time_ms negative", entry(0, "time_ms", -100)),
        FaultCase("numbers", "time_ms 150.5 (fraction)", entry(1, "time_ms", 150.5)),
        FaultCase("numbers", "time_ms non-monotonic", manifest(_swap(2, 3))),
        FaultCase("numbers", "time_ms duplicated", manifest(lambda m: m["entries"][4].__setitem__("time_ms", 300))),
        FaultCase(
            "numbers",
            "time_ms equal after conversion (300 and 300.0)",
            manifest(lambda m: m["entries"][4].__setitem__("time_ms", 300.0)),
        ),
        FaultCase("numbers", "timeline action 12", manifest(lambda m: m["actions"].__setitem__(2, 12))),
        FaultCase("numbers", "timeline action 3.5 (fraction)", manifest(lambda m: m["actions"].__setitem__(2, 3.5))),
        FaultCase("numbers", "entry action_idx -1", entry(1, "action_idx", -1)),
        FaultCase("numbers", "entry action_idx true", entry(1, "action_idx", True)),
        FaultCase("numbers", "fps NaN", metadata("fps", float("nan"))),
        FaultCase("numbers", "fps 0", metadata("fps", 0)),
        FaultCase("numbers", "width 0", metadata("width", 0)),
        FaultCase("numbers", "width 23.5 (fraction)", metadata("width", 23.5)),
        FaultCase("numbers", "width that the frames do not have", _declared_width(25)),
        # decode: every file that does not decode to a real capture frame is an answer, not a traceback
        FaultCase("decode", "truncated JPEG", frame_bytes(lambda b: b[: len(b) // 2])),
        FaultCase("decode", "zero-byte frame", frame_bytes(lambda b: b"")),
        FaultCase("decode", "text file named .jpeg", frame_bytes(lambda b: b"hello")),
        FaultCase(
            "decode", "frame of another size", frame_bytes(lambda b: _image(np.zeros((30, 24), np.uint8), "JPEG"))
        ),
        FaultCase(
            "decode",
            "colour frame among gray ones",
            frame_bytes(lambda b: _image(np.zeros((24, 24, 3), np.uint8), "JPEG")),
        ),
        FaultCase(
            "decode", "decompression bomb (PNG header of 40000x40000)", frame_bytes(lambda b: _png(40000, 40000))
        ),
        FaultCase(
            "decode",
            "frame larger than any real capture",
            frame_bytes(lambda b: _png(int(MAX_FRAME_PIXELS**0.5) + 1, int(MAX_FRAME_PIXELS**0.5) + 1)),
        ),
        FaultCase("decode", "16-bit PNG", frame_bytes(lambda b: _image(np.zeros((24, 24), np.uint16), "PNG"))),
        FaultCase("decode", ".npy with NaN", npy_frame(lambda: _npy(np.full((24, 24), np.nan, np.float32)))),
        FaultCase("decode", ".npy of floats", npy_frame(lambda: _npy(np.full((24, 24), 0.5)))),
        FaultCase("decode", ".npy holding a pickle", npy_frame(lambda: _npy(np.array([{}], dtype=object), True))),
        FaultCase("decode", ".npy header claiming 10^12 pixels", npy_frame(lambda: _npy_header((10**6, 10**6)))),
        FaultCase("decode", "unsupported extension", _unsupported_extension),
        *(
            FaultCase("decode", f"{name} named .jpeg", frame_bytes(lambda b, f=fmt: _image(_GRAY_24, f)))
            for name, fmt in (("TIFF", "TIFF"), ("PGM", "PPM"), ("SGI", "SGI"), ("PCX", "PCX"))
        ),
        # json: too deep, too large, not JSON, not UTF-8, numbers Python will not parse
        FaultCase("json", "manifest does not parse", raw_text("manifest.json", '{"entries": [')),
        FaultCase("json", "manifest nested 100000 deep", raw_text("manifest.json", _deep(100_000))),
        FaultCase("json", "metadata nested 100000 deep", raw_text("metadata.json", _deep(100_000))),
        FaultCase("json", "manifest larger than any capture writes (sparse)", _too_large),
        FaultCase("json", "manifest not UTF-8", raw_bytes("manifest.json", b"\xff\xfe[")),
        FaultCase("json", "integer of 5000 digits", raw_text("metadata.json", '{"step_ms": ' + "9" * 5000 + "}")),
        FaultCase("json", "manifest is a number", raw_text("manifest.json", "3")),
        FaultCase("json", "metadata is a list", raw_text("metadata.json", "[]")),
        FaultCase("json", "a key twice in metadata", _key_twice("metadata.json", "step_ms", 20)),
        FaultCase("json", "a key twice in a manifest entry", _key_twice("manifest.json", "action_idx", 11)),
        # types: wrong types anywhere in the manifest
        FaultCase("types", "entries is an object", manifest(lambda m: m.__setitem__("entries", {}))),
        FaultCase("types", "entry is a string", manifest(lambda m: m["entries"].__setitem__(2, "frame"))),
        FaultCase("types", "entry lacks time_ms", manifest(lambda m: m["entries"][2].pop("time_ms"))),
        FaultCase("types", "file is a number", entry(2, "file", 7)),
        FaultCase("types", "file is a list", entry(2, "file", ["a.jpeg"])),
        FaultCase("types", "file is null", entry(2, "file", None)),
        FaultCase("types", "file cannot be encoded (lone surrogate)", entry(2, "file", "\ud800.jpeg")),
        FaultCase("types", "file with a NUL byte", entry(2, "file", "frame\x00.jpeg")),
        FaultCase("types", "time_ms is a string", entry(2, "time_ms", "200")),
        FaultCase("types", "time_ms is null", entry(2, "time_ms", None)),
        FaultCase("types", "action_idx is a string", entry(2, "action_idx", "3")),
        FaultCase("types", "actions is an object", manifest(lambda m: m.__setitem__("actions", {"0": 1}))),
        FaultCase("types", "meta is a string", manifest(lambda m: m.__setitem__("meta", "none"))),
        FaultCase("types", "meta snapshot is a list", manifest(lambda m: m.__setitem__("meta", [[1, 2]]))),
        FaultCase(
            "types",
            "meta snapshot out of time order",
            manifest(lambda m: m.__setitem__("meta", [{"time_ms": 100}, {"time_ms": 0}])),
        ),
        FaultCase(
            "types",
            "meta value NaN (include_floats)",
            manifest(lambda m: m.__setitem__("meta", [{"time_ms": 0, "speed": float("nan")}])),
        ),
        FaultCase("types", "step_ms is a string", metadata("step_ms", "10")),
        # layout
        FaultCase("layout", "no manifest.json (unfinished capture)", _no_manifest),
        FaultCase("layout", "manifest names a missing frame", _missing(3)),
        FaultCase("layout", "manifest with entries but no frame files", _no_frames),
        FaultCase("layout", "manifest with no entries", manifest(lambda m: m.__setitem__("entries", []))),
        FaultCase("layout", "empty track directory", _empty_track, True),
        # labels: frames and actions that do not line up would train on wrong labels, or on none, without a word
        FaultCase("labels", "fps 25 for frames 100 ms apart", metadata("fps", 25)),
        FaultCase("labels", "fps 4 for frames 100 ms apart", metadata("fps", 4)),
        FaultCase("labels", "frame clock 10 min after the action timeline (every label masked)", _shift_clock(600_000)),
        FaultCase("labels", "action timeline covering a fifth of the frames", manifest(_cut_timeline(5))),
        # most frames still on the timeline, but every label that of another moment (the entries' action_idx
        # match the timeline 3 s away)
        FaultCase("labels", "frame clock 3 s after the action timeline", _shift_clock(3_000)),
        FaultCase("labels", "action timeline starting 3 s late", manifest(_delay_timeline(300))),
    ]


# ------------------------------------------------------------------------------------------ running


def write_valid_tree(root: Path) -> Path:
    """Three tracks of one small valid replay each (8 frames of 24x24 JPEG at 10 fps with a 10 ms timeline)."""
    from tmpretrain.synthetic.trees import write_tree

    write_tree(root, tracks=3, replays_per_track=1, frames_per_replay=8, size=24)
    return root


def ingest_params(replays_dir: Path, cache_dir: Path, strict: bool, workers: int = 2, *, include_floats: bool = False):
    from tmpretrain.params import DataParams

    return DataParams(
        replays_dir=str(replays_dir),
        cache_dir=str(cache_dir),
        image_height=16,
        image_width=16,
        val_fraction=0.34,
        test_fraction=0.0,  # the corpus trees hold 2-3 tracks: train and val only
        strict=strict,
        include_floats=include_floats,
        workers=workers,
    )


def stored_replays(cache_dir: Path) -> dict[str, tuple]:
    """{replay path in the tree: (frames, frame times, frame actions, timeline)} of a built store."""
    from tmpretrain.frame_store import FrameStore

    store = FrameStore.open(cache_dir, in_memory=True)
    out = {}
    for rid, row in enumerate(store.meta["replays"]):
        s, c = row["frame_start"], row["frame_count"]
        timeline = store.timeline(rid)
        out[row["replay"]] = (
            store.frames[s : s + c].tobytes(),
            store.frame_time_ms[s : s + c].tolist(),
            store.frame_action[s : s + c].tolist(),
            None if timeline is None else timeline.tolist(),
        )
    return out


def write_mixed_tree(root: Path, cases: list[FaultCase] | None = None) -> tuple[list[str], dict[str, str]]:
    """The valid tree (track00..02) with each case planted in a track of its own (untrusted000, ...), as a user's
    tree with bad replays among good ones. Returns the paths the ingest report must name, and
    {replay the store must hold: the replay of the valid tree whose frames and labels it must equal}."""
    write_valid_tree(root)
    must_hold = {p: p for p in (r.relative_to(root).as_posix() for r in sorted(root.glob("*/*")))}
    culprits = []
    for k, case in enumerate(cases if cases is not None else hostile_replays()):
        replay = root / f"untrusted{k:03d}" / Path(PLANTED).name  # sorts after the valid track00..02
        shutil.copytree(root / PLANTED, replay)
        culprit = case.plant(replay)
        if culprit is not None:
            culprits.append(str(culprit))
        if culprit is None or case.keeps_replay:
            must_hold[replay.relative_to(root).as_posix()] = PLANTED
    return culprits, must_hold


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.is_dir() else {}


def check_case(case: FaultCase, workdir: Path, template: Path, clean_cache: Path, workers: int = 2) -> dict:
    """Plant one case into a copy of the valid tree `template` (whose clean store is `clean_cache`), ingest it
    with data.strict false (into a new cache) and true (over a copy of the clean store, which a failure must leave
    byte for byte), and judge the answers. Returns the row run_ingest_faults documents."""
    from tmpretrain.frame_store import build_frame_store

    root = workdir / "replays"
    shutil.copytree(template, root, symlinks=True)
    shutil.copytree(clean_cache, workdir / "cache_strict")
    culprit = case.plant(root / PLANTED)
    clean = stored_replays(clean_cache)
    expected = {k: v for k, v in clean.items() if case.keeps_replay or k != PLANTED}
    row = {"fault_class": case.fault_class, "variant": case.variant, "traceback": False, "hang": False}
    row["wrong_result"] = False
    answers = {}
    for mode in ("lenient", "strict"):
        cache = workdir / f"cache_{mode}"
        params = ingest_params(root, cache, strict=mode == "strict", workers=workers, include_floats=True)
        try:
            report = build_frame_store(params, progress=False)
        except PretrainError as exc:
            answers[mode] = ("error", str(exc))
            continue
        except Exception:  # noqa: BLE001 - what this runner exists to catch and count
            row["traceback"] = True
            answers[mode] = ("traceback", traceback.format_exc(limit=-1).strip().splitlines()[-1])
            continue
        answers[mode] = ("report", report["skipped"])
        row["wrong_result"] |= stored_replays(cache) != expected
    # a failed build leaves the previous store as it was, and nothing half-built
    row["outputs_lost"] = answers["strict"][0] != "report" and _files(workdir / "cache_strict") != _files(clean_cache)
    row["wrong_result"] |= any(workdir.glob("cache_*.partial")) or any(workdir.glob("cache_*.holder"))
    row["outcome"], row["detail"] = judge_ingest(culprit, answers["lenient"], answers["strict"])
    row["wrong_result"] |= row["outcome"] == "wrong answer"
    return row


def run_ingest_faults(tmpdir: Path, workers: int = 2, cases: list[FaultCase] | None = None) -> list[dict]:
    """Every case of the corpus (or `cases`), each in its own copy of a small valid tree, ingested at
    data.workers `workers` with strict false and true. One row per case: fault_class, variant, outcome
    ("skipped and reported", "handled" or "wrong answer"), traceback, wrong_result, outputs_lost, detail."""
    from tmpretrain.frame_store import build_frame_store

    tmpdir = Path(tmpdir)
    template = write_valid_tree(tmpdir / "template")
    clean_cache = tmpdir / "clean_cache"
    build_frame_store(ingest_params(template, clean_cache, strict=True, workers=1, include_floats=True), progress=False)
    rows = []
    for k, case in enumerate(cases if cases is not None else hostile_replays()):
        workdir = tmpdir / f"case{k:03d}"
        workdir.mkdir()
        rows.append(check_case(case, workdir, template, clean_cache, workers))
        shutil.rmtree(workdir, ignore_errors=True)
    return rows
