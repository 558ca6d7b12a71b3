"""Export metadata, hashes and verified loading."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from iqn_reference import IQNNetwork
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
    sha256_file,
    write_meta,
)
from tmpretrain.models import ActionHead, BCModel, build_encoder


def _export(out, hw=(64, 64)):
    model = BCModel(hw, 1, 2, True, 1024, 0.0, 0.0, False)
    export_encoder(model.encoder, out / ENCODER_FILE)
    export_actions_head(model.heads[head_index([0, 10], 0)], out / ACTIONS_HEAD_FILE, model.head_input_dim)
    meta = {
        "image_size": list(hw),
        "head_input_dim": model.head_input_dim,
        "action_table": action_table(),
        "normalization": "iqn",
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
    with pytest.raises(ExportError, match="image size"):
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
