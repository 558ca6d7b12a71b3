"""Output folders named by params (`synth.out_dir`, `data.cache_dir`): what a stage may delete and replace.

A path param is the user's text, so `..`, `src`, the capture tree or a folder of notes can end up where a stage
replaces its output. Every stage that replaces such a folder goes through `replace_output_dir` /
`clear_output_dir`, and `validate` runs the same `check_output_dir` before DVC removes anything. A target is refused
when it is, or lies above, the project root; when it equals, contains or lies inside another path param (a
synthesized tree may equal `data.replays_dir`: that is how the default pipeline reads it); when it is a link; and
when it already exists as something this stage did not write. What a stage wrote carries a marker file naming the
stage (`MARKER`). Outputs written before the marker existed are recognised by their exact layout (a frame store's
files; a synthesized tree's `synth-tNNN/posN_botN_Nms.replay` directories) and accepted once; the stage's next run
marks them.

Imports the standard library only: `validate` stays fast.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import ParamsError
from .files import read_capped

MARKER = ".tmpretrain-output"

# What ingest writes into a frame store (frame_store.py); any other entry means the folder is not one.
FRAME_STORE_FILES = frozenset(
    {"cache_meta.json", "frames.npy", "index.npz", "timelines.npy", "floats.npy", "ingest_report.json"}
)
# synthetic.generate names: track_id() and the replay directories it writes into each track.
_SYNTH_TRACK = re.compile(r"synth-t\d{3,}")
_SYNTH_REPLAY = re.compile(r"pos\d+_bot\d+_\d+ms\.replay")


def _is_frame_store(folder: Path) -> bool:
    names = {entry.name for entry in folder.iterdir()}
    return "cache_meta.json" in names and names <= FRAME_STORE_FILES | {MARKER}


def _is_synthesized_tree(folder: Path) -> bool:
    tracks = list(folder.iterdir())
    return all(
        _SYNTH_TRACK.fullmatch(track.name)
        and track.is_dir()
        and not track.is_symlink()
        and all(_SYNTH_REPLAY.fullmatch(r.name) and r.is_dir() and not r.is_symlink() for r in track.iterdir())
        for track in tracks
        if track.name != MARKER
    )


# The output params, the stage that writes each, and how to recognise its output from before the marker.
OUTPUT_PARAMS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "synth.out_dir": ("synthesize", _is_synthesized_tree),
    "data.cache_dir": ("ingest", _is_frame_store),
}


def _written_by(folder: Path) -> str | None:
    try:
        return read_capped(folder / MARKER, 64).decode("utf-8").strip()  # a stage's name
    except FileNotFoundError:
        return None


def _resolved(path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _overlap(a: Path, b: Path) -> str | None:
    if a == b:
        return "is"
    if b.is_relative_to(a):
        return "contains"
    if a.is_relative_to(b):
        return "lies inside"
    return None


def _refuse_the_project(key: str, target) -> None:
    project, real = _resolved(Path.cwd()), _resolved(target)
    if project.is_relative_to(real):
        where = "is the project folder" if real == project else f"holds the project folder ({project})"
        raise ParamsError(
            key, f"{str(target)!r} {where}; {OUTPUT_PARAMS[key][0]} would delete it: name a folder inside the project"
        )


def check_output_dir(key: str, target, others: Mapping[str, object] | None = None, may_equal: tuple = ()) -> None:
    """Raise ParamsError naming `key` unless the folder `target` may be deleted and rewritten by its stage.

    `others`: the other path params ({key: path}) it must stay clear of; `may_equal`: those of them it may equal.
    The project is the working directory, where DVC runs every stage; relative paths are relative to it."""
    stage, recognise = OUTPUT_PARAMS[key]
    shown = repr(str(target))
    path = Path(os.path.abspath(Path(target).expanduser()))
    real = _resolved(target)
    _refuse_the_project(key, target)
    for other_key, other in (others or {}).items():
        relation = _overlap(real, _resolved(other))
        if relation == "lies inside" and other_key in OUTPUT_PARAMS:
            continue  # the other output holds this one: its own check refuses it, naming the key at fault
        if relation and not (relation == "is" and other_key in may_equal):
            raise ParamsError(
                key, f"{shown} {relation} {other_key} ({str(other)!r}); {stage} would replace it: use separate folders"
            )
    if path.is_symlink():
        raise ParamsError(key, f"{shown} is a link (to {real}); set {key} to the folder itself")
    if not path.exists():
        return
    if not path.is_dir():
        raise ParamsError(key, f"{shown} is a file, not a folder; {stage} writes a folder there")
    try:
        written_by = _written_by(path)
        ours = written_by == stage or (written_by is None and (not any(path.iterdir()) or recognise(path)))
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(key, f"{shown} cannot be read to check what it holds ({exc})") from None
    if not ours:
        made = f"was written by {written_by}" if written_by else f"has no {MARKER} file"
        raise ParamsError(
            key,
            f"{shown} is a folder {stage} did not write ({made}); refusing to replace it: name a new folder, "
            f"or delete this one yourself",
        )


def mark_output_dir(folder: Path, key: str) -> None:
    """Write the marker that lets `key`'s stage replace `folder` next time."""
    (Path(folder) / MARKER).write_text(OUTPUT_PARAMS[key][0] + "\n", encoding="utf-8")


def clear_output_dir(key: str, target, **checks) -> Path:
    """Check `target` (see check_output_dir), then empty it and mark it: the stage writes into it afterwards."""
    check_output_dir(key, target, **checks)
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    mark_output_dir(target, key)
    return target


def replace_output_dir(key: str, target, new: Path, **checks) -> None:
    """Check `target`, then put the complete folder `new` (marked here) in its place. Two steps (no portable atomic
    swap of folders): a failure in between leaves no output, never a wrong one."""
    check_output_dir(key, target, **checks)
    mark_output_dir(new, key)
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    os.replace(new, target)


def check_output_params(params) -> None:
    """validate: every output path param against the project and the other path params, and a capture tree that
    exists or that synthesize makes. Raises ParamsError naming the first key at fault."""
    synth, data = params.synth, params.data
    # The project first, for both: `..` is blamed on the key that says it, not on the other one it then holds.
    _refuse_the_project("synth.out_dir", synth.out_dir)
    _refuse_the_project("data.cache_dir", data.cache_dir)
    check_output_dir(
        "data.cache_dir", data.cache_dir, {"data.replays_dir": data.replays_dir, "synth.out_dir": synth.out_dir}
    )
    check_output_dir(
        "synth.out_dir",
        synth.out_dir,
        {"data.replays_dir": data.replays_dir, "data.cache_dir": data.cache_dir},
        may_equal=("data.replays_dir",),  # the default pipeline: ingest reads what synthesize wrote
    )
    if _resolved(data.replays_dir) != _resolved(synth.out_dir) and not Path(data.replays_dir).is_dir():
        raise ParamsError(
            "data.replays_dir",
            f"{data.replays_dir!r} is not a folder, and no stage makes it (synthesize writes synth.out_dir, "
            f"{synth.out_dir!r}): set it to your capture tree (docs/data.md)",
        )
