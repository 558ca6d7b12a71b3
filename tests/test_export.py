"""Export metadata, hashes and verified loading: every refusal class of the fault corpus is one ExportError line,
a new export replaces the old one only once complete, and the docs' loading snippet works for both head kinds."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import data_params, make_tree
from iqn_reference import IQNNetwork
from support.faults import CLEAR, HANDLED, run_export_faults
from support.models import bc_model
from tmpretrain.errors import PretrainError
from tmpretrain.export import (
    ACTIONS_HEAD_FILE,
    ENCODER_FILE,
    META_FILE,
    ExportError,
    action_table,
    arch_hash,
    export_actions_head,
    export_encoder,
    git_commit,
    head_index,
    load_export,
    replace_when_complete,
    sha256_file,
    stage_code_paths,
    write_meta,
)
from tmpretrain.frame_store import build_frame_store
from tmpretrain.models import ActionHead, build_encoder
from tmpretrain.params import parse_params
from tmpretrain.pretrain import run_bc

REPO = Path(__file__).resolve().parents[1]


def _export(out, hw=(64, 64)):
    model = bc_model(image_hw=hw, n_offsets=2)
    export_encoder(model.encoder, out / ENCODER_FILE)
    export_actions_head(model.heads[head_index([0, 10], 0)], out / ACTIONS_HEAD_FILE, model.head_input_dim)
    meta = {
        "level": 1,
        "image_size": list(hw),
        "head_input_dim": model.head_input_dim,
        "action_table": action_table(),
        "image_normalization": "iqn",
    }
    return model, write_meta(out, meta)


def test_write_and_load_export_roundtrip(tmp_path):
    model, meta = _export(tmp_path)
    on_disk = json.loads((tmp_path / META_FILE).read_text())
    assert on_disk == meta
    assert set(meta["files"]) == {ENCODER_FILE, ACTIONS_HEAD_FILE}
    info = meta["files"][ENCODER_FILE]
    assert info["sha256"] == sha256_file(tmp_path / ENCODER_FILE)
    assert info["bytes"] == (tmp_path / ENCODER_FILE).stat().st_size
    assert meta["action_table"][11]["name"] == "right+accel+brake"

    loaded_meta, states = load_export(tmp_path)
    assert loaded_meta == meta
    agent = IQNNetwork(64, 64, 128)
    agent.img_head.load_state_dict(states[ENCODER_FILE], strict=True)
    agent.A_head.load_state_dict(states[ACTIONS_HEAD_FILE], strict=True)
    assert torch.equal(states[ACTIONS_HEAD_FILE]["0.weight"], model.heads[0][0].weight.detach())


def test_load_export_detects_tampered_file(tmp_path):
    _export(tmp_path)
    state = torch.load(tmp_path / ENCODER_FILE, weights_only=True)
    state["0.bias"] += 1.0
    torch.save(state, tmp_path / ENCODER_FILE)
    with pytest.raises(ExportError, match="encoder.pt.*sha256"):
        load_export(tmp_path)


def test_load_export_detects_missing_file_and_bad_meta(tmp_path):
    _export(tmp_path)
    (tmp_path / ACTIONS_HEAD_FILE).unlink()
    with pytest.raises(ExportError, match="actions_head.pt.*missing"):
        load_export(tmp_path)
    with pytest.raises(ExportError, match="not found"):
        load_export(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (os.mkfifo, "not a regular file: a FIFO (named pipe)"),
        (lambda p: p.symlink_to("/dev/zero"), "not a regular file: a character device"),
    ],
    ids=["fifo", "dev-zero"],
)
def test_export_metadata_that_would_hang_or_grow_is_one_line(tmp_path, replace, message):
    """`tmpretrain export inspect` hung on a FIFO and grew until killed on a link to /dev/zero."""
    _export(tmp_path)
    (tmp_path / META_FILE).unlink()
    replace(tmp_path / META_FILE)
    with pytest.raises(ExportError) as err:
        load_export(tmp_path)
    assert str(err.value) == f"{tmp_path / META_FILE}: {message}; a pretrain_meta.json is a few KB"


def test_load_export_checks_head_width_against_image_size(tmp_path):
    _export(tmp_path)  # a 64x64 export (D = 768) ...
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["image_size"] = [120, 160]  # ... that claims to be for the 120x160 agent (D = 5888)
    meta.pop("head_input_dim")
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="actions_head.pt.*shape"):
        load_export(tmp_path)
    meta.pop("image_size")
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="image_size: field required"):
        load_export(tmp_path)


def test_load_export_120x160(tmp_path):
    _export(tmp_path, hw=(120, 160))
    _, states = load_export(tmp_path)
    IQNNetwork(120, 160, 64).A_head.load_state_dict(states[ACTIONS_HEAD_FILE], strict=True)


def test_export_error_is_a_pretrain_error(tmp_path):
    assert issubclass(ExportError, PretrainError)
    with pytest.raises(PretrainError):
        export_actions_head(ActionHead(512), tmp_path / "h.pt", 768)


def test_head_index_by_value():
    assert head_index([-10, 0, 10, 100], 0) == 1
    assert head_index([-10, 0, 10, 100], 100) == 3
    with pytest.raises(ExportError):
        head_index([-10, 10], 0)


def test_arch_hash():
    a, b = build_encoder(), build_encoder()
    assert arch_hash(a) == arch_hash(b)  # weights do not matter, only keys and shapes
    assert arch_hash(a) == arch_hash(a.state_dict())
    assert arch_hash(ActionHead(768)) != arch_hash(ActionHead(512))
    assert len(arch_hash(a)) == 64


def test_git_commit_is_the_code_revision(tmp_path):
    assert git_commit(cwd=tmp_path) is None  # not a repository

    def git(*args):
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
        return subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True, text=True)

    git("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("a = 1\n")
    (tmp_path / "README.md").write_text("x\n")
    git("add", "-A")
    git("commit", "-qm", "code")
    code = git("rev-parse", "HEAD").stdout.strip()
    assert git_commit(cwd=tmp_path) == code
    (tmp_path / "README.md").write_text("y\n")  # docs change, committed or not: same code revision
    assert git_commit(cwd=tmp_path) == code
    git("commit", "-qam", "docs")
    assert git_commit(cwd=tmp_path) == code
    (tmp_path / "src" / "m.py").write_text("a = 2\n")  # uncommitted code change
    assert git_commit(cwd=tmp_path) == code + "-dirty"
    git("commit", "-qam", "code 2")
    assert git_commit(cwd=tmp_path) == git("rev-parse", "HEAD").stdout.strip()


def test_an_exports_revision_is_that_of_its_stages_code_so_other_commits_leave_its_bytes(tmp_path, monkeypatch):
    """A commit to code the stage does not depend on (dvc.yaml) must not change what the export records: else
    dvc.lock goes stale on every such commit and a fresh clone's `dvc repro` gives other models than the lock's."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True, text=True)

    monkeypatch.chdir(tmp_path)
    git("init", "-q")
    (tmp_path / "src").mkdir()
    for name in ("trained.py", "other.py"):
        (tmp_path / "src" / name).write_text("a = 1\n")
    deps = "deps: [data/params.validated, {src/trained.py: {}}]"
    (tmp_path / "dvc.yaml").write_text(f"stages:\n  train:\n    cmd: python x\n    {deps}\n")
    git("add", "-A")
    git("commit", "-qm", "code")
    code = git("rev-parse", "HEAD").stdout.strip()
    assert stage_code_paths("train") == ("src/trained.py",)
    assert stage_code_paths("absent") == ("src",) and stage_code_paths("train", tmp_path / "none.yaml") == ("src",)
    for broken in ("stages: [", "stages:\n  train: 3\n", "stages:\n  train:\n    deps: [{}]\n"):
        (tmp_path / "broken.yaml").write_text(broken)
        assert stage_code_paths("train", tmp_path / "broken.yaml") == ("src",)
    (tmp_path / "src" / "other.py").write_text("a = 2\n")
    git("commit", "-qam", "other code")
    assert git_commit(code_paths=stage_code_paths("train")) == code
    assert git_commit(code_paths=("src",)) != code
    (tmp_path / "src" / "trained.py").write_text("a = 2\n")
    git("commit", "-qam", "the stage's code")
    assert git_commit(code_paths=stage_code_paths("train")) == git("rev-parse", "HEAD").stdout.strip()


def test_the_pretraining_stages_code_paths_are_files_of_the_package():
    for stage in ("pretrain_vis", "pretrain_bc"):
        paths = stage_code_paths(stage, REPO / "dvc.yaml")
        assert f"src/tmpretrain/stages/{stage}.py" in paths and "src/tmpretrain/pretrain.py" in paths
        assert all((REPO / p).is_file() for p in paths)


# ------------------------------------------------------------------------------------------ refusals


def test_every_export_fault_is_one_clear_line_and_nothing_is_lost(tmp_path):
    """The export part of the fault corpus (tests/support/faults.py, the table in docs/reliability.md): every planted
    fault is refused with one ExportError line naming what the corpus expects, reading changes nothing, and a new
    export that fails or is killed while written leaves the previous one byte for byte."""
    rows = run_export_faults(tmp_path)
    assert len(rows) >= 70
    bad = [r for r in rows if r["traceback"] or r["wrong_result"] or r["outputs_lost"]]
    assert not bad, "\n".join(f"{r['fault_class']} / {r['variant']}: {r['outcome']}: {r['detail']}" for r in bad)
    assert {r["outcome"] for r in rows} == {CLEAR, HANDLED}
    classes = {r["fault_class"] for r in rows}
    for needed in ("missing or extra files", "metadata", "NaN", "file names with paths", "shapes", "killed"):
        assert any(needed in c for c in classes), needed


def test_export_refuses_non_finite_weights(tmp_path):
    encoder = build_encoder()
    with torch.no_grad():
        encoder[2].bias[3] = float("inf")
    with pytest.raises(ExportError, match=r"2\.bias hold NaN or infinite values"):
        export_encoder(encoder, tmp_path / ENCODER_FILE)
    assert not (tmp_path / ENCODER_FILE).exists()


def test_load_export_refuses_finite_weights_that_overflow(tmp_path):
    out = tmp_path / "bc"
    out.mkdir()
    _export(out)
    load_export(out)
    state = torch.load(out / ACTIONS_HEAD_FILE, weights_only=True)
    torch.save({k: torch.full_like(v, 1e30) for k, v in state.items()}, out / ACTIONS_HEAD_FILE)  # finite
    meta = json.loads((out / META_FILE).read_text())
    size = (out / ACTIONS_HEAD_FILE).stat().st_size  # recorded: only the probe can tell
    meta["files"][ACTIONS_HEAD_FILE] = {"sha256": sha256_file(out / ACTIONS_HEAD_FILE), "bytes": size}
    (out / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ExportError) as refused:
        load_export(out)
    assert str(refused.value) == (
        f"{out / ACTIONS_HEAD_FILE}: a probe frame gives non-finite outputs (largest weight 1e+30): the weights "
        "overflow; export again from a run that did not diverge"
    )


def test_a_new_export_replaces_the_old_one_only_when_complete(tmp_path):
    out = tmp_path / "models" / "bc"
    out.mkdir(parents=True)
    _, old_meta = _export(out)
    (out / "stale_epoch.pt").write_bytes(b"from an older run")  # would make load_export refuse the directory
    with pytest.raises(RuntimeError, match="half way"):
        with replace_when_complete(out) as staging:
            assert staging.parent == out.parent and staging != out
            export_encoder(build_encoder(), staging / ENCODER_FILE)
            assert json.loads((out / META_FILE).read_text()) == old_meta  # the old export is still in place
            raise RuntimeError("half way")
    assert sorted(p.name for p in out.parent.iterdir()) == ["bc"]  # no staging directory left behind
    assert json.loads((out / META_FILE).read_text()) == old_meta

    with replace_when_complete(out) as staging:
        export_encoder(build_encoder(), staging / ENCODER_FILE)
        new_meta = write_meta(staging, {"level": 0, "image_size": [64, 64], "image_normalization": "iqn"})
    assert sorted(p.name for p in out.iterdir()) == [ENCODER_FILE, META_FILE]  # stale files went with the old one
    assert load_export(out)[0] == new_meta
    assert sorted(p.name for p in out.parent.iterdir()) == ["bc"]


# ------------------------------------------------------------------------------- the docs' snippets


@pytest.fixture(scope="module")
def bc_projects(tmp_path_factory) -> dict[str, Path]:
    """Real pretrain_bc exports of both head kinds (64x64 frames, the agent's size), each in a project dir."""
    root = tmp_path_factory.mktemp("bc_exports")
    cwd = Path.cwd()
    os.chdir(root)  # DVCLive looks for a repository from the working directory
    try:
        tree = make_tree(root / "replays", n_tracks=3, replays_per_track=1, n_frames=12, size=40)
        build_frame_store(data_params(root, tree, image_height=64, image_width=64), progress=False)
        projects = {}
        for kind, use_actions_head in (("A_head", True), ("Linear", False)):
            bc = {"encoder_init": "none", "epochs": 1, "batch_size": 16, "use_actions_head": use_actions_head}
            params = parse_params({"bc": {**bc, "trainer": {"accelerator": "cpu"}}}).bc
            project = root / kind
            run_bc(params, root / "cache", project / "models/bc", project / "reports/bc")
            projects[kind] = project
    finally:
        os.chdir(cwd)
    return projects


def _doc_snippets() -> list[tuple[str, str]]:
    """Every python code block in the docs that loads an export."""
    snippets = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for k, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)):
            if "load_export" in block:
                snippets.append((f"{doc.name}#{k}", block))
    return snippets


SNIPPETS = _doc_snippets()


def test_the_docs_show_how_to_load_an_export():
    assert any(name.startswith("training.md") for name, _ in SNIPPETS)


@pytest.mark.parametrize("kind", ["A_head", "Linear"])
@pytest.mark.parametrize(("name", "code"), SNIPPETS, ids=[name for name, _ in SNIPPETS])
def test_doc_snippets_that_load_an_export_run_for_both_head_kinds(bc_projects, monkeypatch, kind, name, code):
    monkeypatch.chdir(bc_projects[kind])
    agent = IQNNetwork(64, 64, 128)
    untouched_head = {k: v.clone() for k, v in agent.A_head.state_dict().items()}
    exec(compile(code, name, "exec"), {"agent": agent})
    _, states = load_export("models/bc")
    assert all(torch.equal(agent.img_head.state_dict()[k], v) for k, v in states[ENCODER_FILE].items())
    head = agent.A_head.state_dict()
    if kind == "A_head":
        assert all(torch.equal(head[k], v) for k, v in states[ACTIONS_HEAD_FILE].items())
    else:
        assert ACTIONS_HEAD_FILE not in states
        assert all(torch.equal(head[k], v) for k, v in untouched_head.items())
