"""A read-only or full models/ (or reports/) is found before training starts: one error naming the folder, and the
previous export and reports as they were (was: a traceback after training, with the reports already rewritten)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from support.setups import Unavailable, tmpfs
from tmpretrain.errors import PretrainError
from tmpretrain.params import parse_params
from tmpretrain.pretrain import run_bc

BC = {"encoder_init": "none", "epochs": 1, "batch_size": 32, "trainer": {"accelerator": "cpu"}}


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str):
    """A small RAM disk on `folder` (support.setups.tmpfs; skipped where it cannot be made)."""
    try:
        disk = tmpfs(folder, size)
        disk.__enter__()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield folder
    finally:
        disk.__exit__(None, None, None)


def _previous_outputs(root: Path) -> dict[str, str]:
    for name in ("models/bc/encoder.pt", "reports/bc/metrics.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"the previous run's {name}\n")
    return _files(root)


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in ("models", "reports")
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }


def _run(root: Path, stage_store: Path) -> str:
    params = parse_params({"bc": BC}).bc
    with pytest.raises(PretrainError) as refused:
        run_bc(params, stage_store, root / "models/bc", root / "reports/bc", checkpoint_dir=root / "checkpoints")
    return str(refused.value)


def test_a_read_only_models_folder_is_refused_before_training(stage_store, tmp_path):
    models = tmp_path / "models"
    if os.geteuid() != 0:
        before = _previous_outputs(tmp_path)
        models.chmod(0o555)
        message, after = _run(tmp_path, stage_store), _files(tmp_path)
        models.chmod(0o755)
    else:
        with _tmpfs(models, "1m"):
            before = _previous_outputs(tmp_path)
            subprocess.run(["mount", "-o", "remount,ro", models], check=True)
            message, after = _run(tmp_path, stage_store), _files(tmp_path)
    assert message.startswith(f"{models}: cannot write the export there (")
    assert message.endswith("); nothing was changed")
    assert after == before


def test_a_full_reports_disk_is_refused_before_training(stage_store, tmp_path):
    with _tmpfs(tmp_path / "reports", "64k"):
        before = _previous_outputs(tmp_path)
        message = _run(tmp_path, stage_store)
        assert _files(tmp_path) == before
    assert message.startswith(f"{tmp_path / 'reports'}: not enough disk space: this run's outputs need about 17 MB")
    assert message.endswith("MB free; free some and run again; nothing was changed")
