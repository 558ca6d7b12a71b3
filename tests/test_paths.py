"""Path params are contained: a stage deletes and replaces only a folder it wrote, never the project, the sources,
the capture tree or a folder of the user's; `validate` refuses the same params before DVC removes anything."""

from __future__ import annotations

import importlib

import pytest
import yaml

from conftest import data_params, make_tree
from tmpretrain.errors import ParamsError
from tmpretrain.frame_store import FrameStore, build_frame_store
from tmpretrain.paths import MARKER, check_output_dir


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (the working directory, as under DVC) with sources, a capture tree and a user's notes."""
    root = tmp_path / "project"
    make_tree(root / "captures", n_tracks=3, replays_per_track=1, size=16)
    (root / "src").mkdir()
    (root / "src" / "code.py").write_text("print('mine')\n")
    (root / "mynotes").mkdir()
    (root / "mynotes" / "todo.txt").write_text("my notes\n")
    monkeypatch.chdir(root)
    return root


def _stage(project, stage: str, data: dict | None = None, synth: dict | None = None, capsys=None) -> str:
    """Run a stage's entry point in process with these params; return its one error line ('' on success)."""
    raw = {"data": {"replays_dir": "captures", "cache_dir": "data/cache", **(data or {})}, "synth": synth or {}}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    main = importlib.import_module(f"tmpretrain.stages.{stage}").main
    try:
        main()
    except SystemExit as exc:
        assert exc.code == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return err.strip()
    return ""


def _files(root) -> dict:
    """Every file under `root` but the workspace's run lock (.tmpretrain/, tests/test_locks.py)."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and ".tmpretrain" not in p.parts)
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.mark.parametrize(
    ("data", "synth", "message"),
    [
        (
            {"cache_dir": "mynotes"},
            {},
            "data.cache_dir: 'mynotes' is a folder ingest did not write (has no .tmpretrain-output file); "
            "refusing to replace it",
        ),
        ({"cache_dir": ".."}, {}, "data.cache_dir: '..' holds the project folder"),
        ({"cache_dir": "."}, {}, "data.cache_dir: '.' is the project folder"),
        ({"cache_dir": "src"}, {}, "data.cache_dir: 'src' is a folder ingest did not write"),
        ({"cache_dir": "captures"}, {}, "data.cache_dir: 'captures' is data.replays_dir ('captures')"),
        ({"cache_dir": "captures/track0"}, {}, "data.cache_dir: 'captures/track0' lies inside data.replays_dir"),
        (  # the capture tree's parent
            {"replays_dir": "captures/track0", "cache_dir": "captures"},
            {},
            "data.cache_dir: 'captures' contains data.replays_dir ('captures/track0')",
        ),
        ({}, {"out_dir": ".."}, "synth.out_dir: '..' holds the project folder"),
        ({}, {"out_dir": "src"}, "synth.out_dir: 'src' is a folder synthesize did not write"),
        ({}, {"out_dir": "data"}, "synth.out_dir: 'data' contains data.cache_dir ('data/cache')"),
        ({}, {"out_dir": "/"}, "synth.out_dir: '/' holds the project folder"),
        ({"replays_dir": "nowhere"}, {}, "data.replays_dir: 'nowhere' is not a folder, and no stage makes it"),
    ],
)
def test_validate_refuses_output_paths_that_would_delete_what_is_not_the_stages(project, data, synth, message, capsys):
    before = _files(project.parent)
    err = _stage(project, "validate", data, synth, capsys)
    assert err.startswith(f"error: params.yaml: {message}"), err
    assert _files(project.parent) == {**before, "project/params.yaml": (project / "params.yaml").read_bytes()}


def test_the_stages_refuse_the_same_paths_by_hand_and_leave_them_untouched(project, capsys):
    """Run without validate (by hand): ingest and synthesize check before they remove or create anything."""
    before = _files(project)
    assert "data.cache_dir: 'mynotes' is a folder ingest did not write" in _stage(
        project, "ingest", {"cache_dir": "mynotes"}, capsys=capsys
    )
    assert "data.cache_dir: 'captures' is data.replays_dir" in _stage(
        project, "ingest", {"cache_dir": "captures"}, capsys=capsys
    )
    assert "synth.out_dir: 'src' is a folder synthesize did not write" in _stage(
        project, "synthesize", synth={"out_dir": "src"}, capsys=capsys
    )
    assert "synth.out_dir: '..' holds the project folder" in _stage(
        project, "synthesize", synth={"out_dir": ".."}, capsys=capsys
    )
    before["params.yaml"] = (project / "params.yaml").read_bytes()
    assert _files(project) == before


def test_a_stage_replaces_what_it_wrote_with_or_without_the_marker(project):
    params = data_params(project, project / "captures", cache_dir="data/cache")
    build_frame_store(params, progress=False)
    cache = project / "data/cache"
    assert (cache / MARKER).read_text() == "ingest\n"
    assert len(FrameStore.open(cache).frames) == 36
    (cache / MARKER).unlink()  # a frame store written before the marker existed: its exact files are recognised
    build_frame_store(params, progress=False)
    assert (cache / MARKER).is_file()
    (cache / MARKER).unlink()
    (cache / "notes.txt").write_text("mine\n")  # unmarked with anything else in it: not a frame store
    with pytest.raises(ParamsError, match=r"data.cache_dir: '.*data/cache' is a folder ingest did not write"):
        build_frame_store(params, progress=False)
    assert (cache / "notes.txt").read_text() == "mine\n"


def test_a_synthesized_tree_is_replaced_only_by_synthesize(project):
    tree = project / "data/replays"
    (tree / "synth-t000" / "pos1_bot0_41230ms.replay").mkdir(parents=True)
    check_output_dir("synth.out_dir", "data/replays")  # written before the marker: recognised by its layout
    with pytest.raises(ParamsError, match="is a folder ingest did not write"):
        check_output_dir("data.cache_dir", "data/replays")
    (tree / MARKER).write_text("synthesize\n")
    with pytest.raises(ParamsError, match=r"\(was written by synthesize\)"):
        check_output_dir("data.cache_dir", "data/replays")
    with pytest.raises(ParamsError, match="synth.out_dir: 'captures' is a folder synthesize did not write"):
        check_output_dir("synth.out_dir", "captures")  # a real capture tree is never taken for a synthesized one


def test_a_linked_or_file_output_is_a_clear_error(project):
    (project / "elsewhere").mkdir()
    (project / "data").mkdir()
    (project / "data/cache").symlink_to(project / "elsewhere")
    with pytest.raises(ParamsError, match=r"data.cache_dir: 'data/cache' is a link \(to .*elsewhere\); set"):
        check_output_dir("data.cache_dir", "data/cache")
    (project / "data/file").write_text("x")
    with pytest.raises(ParamsError, match="data.cache_dir: 'data/file' is a file, not a folder"):
        check_output_dir("data.cache_dir", "data/file")
    check_output_dir("data.cache_dir", "data/new/cache")  # not there yet: fine
    (project / "empty").mkdir()
    check_output_dir("data.cache_dir", "empty")  # nothing to lose


def test_synthesize_marks_its_tree_and_recognises_one_from_before_the_marker(project, capsys):
    """The real generator's names, so that the layout rule for unmarked trees cannot drift from what it writes."""
    synth = dict(out_dir="data/replays", n_tracks=2, replays_per_track=2, seconds_per_replay=1.0, workers=1)
    assert _stage(project, "synthesize", synth={**synth, "width": 16, "height": 16}, capsys=capsys) == ""
    tree = project / "data/replays"
    assert (tree / MARKER).read_text() == "synthesize\n" and len(list(tree.glob("*/*/manifest.json"))) == 4
    (tree / MARKER).unlink()
    check_output_dir("synth.out_dir", "data/replays")
    (tree / "synth-t000" / "notes.txt").write_text("mine\n")  # anything else: not a tree synthesize wrote
    with pytest.raises(ParamsError, match="'data/replays' is a folder synthesize did not write"):
        check_output_dir("synth.out_dir", "data/replays")
