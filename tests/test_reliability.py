"""The real training stages (`python -m tmpretrain.stages.*` in a project directory) under interruption, reruns
and several processes: a killed run leaves the previous export as it was (a new one replaces it only once
complete) and its rerun equals an uninterrupted run with no stale files; the same params give bit-identical
metrics and weights, with `accelerator: auto` on a machine without a GPU as with `cpu`; DDP over 2 CPU processes
(gloo) gives the metrics of one process."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support.setups import STAGE_TIMEOUT, stage_env
from tmpretrain.export import ExportError, load_export

VIS = {"epochs": 1, "batch_size": 64, "trainer": {"accelerator": "cpu"}}
BC = {
    "epochs": 3,
    "batch_size": 32,
    "time_offsets_ms": [0, 100],
    "offset_weights": [1.0, 0.5],
    "trainer": {"accelerator": "cpu"},
}


def _project(root: Path, stage_store: Path, vis: dict | None = None, bc: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    params = {"data": {"cache_dir": str(stage_store)}, "vis": vis or VIS, "bc": bc or BC}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _stage(root: Path, name: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, "-m", f"tmpretrain.stages.{name}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=STAGE_TIMEOUT,
        env=stage_env(),
    )
    assert run.returncode == 0, f"{name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr
    return run


def _tree(d: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under d."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


def _outputs(root: Path, stage: str) -> dict[str, dict[str, str]]:
    return {d: _tree(root / d) for d in (f"models/{stage}", f"reports/{stage}")}


@pytest.fixture(scope="module")
def reference(stage_store, tmp_path_factory) -> Path:
    """One uninterrupted run of pretrain_vis then pretrain_bc (encoder_init: vis)."""
    root = _project(tmp_path_factory.mktemp("reference"), stage_store)
    _stage(root, "pretrain_vis")
    _stage(root, "pretrain_bc")
    return root


# ----------------------------------------------------------------------------------------- determinism


def _auto(group: dict) -> dict:
    """The group with the shipped default `accelerator: auto`: on a machine without a GPU it must be `cpu`."""
    import torch

    return group if torch.cuda.is_available() else {**group, "trainer": {"accelerator": "auto"}}


def test_same_params_give_bit_identical_metrics_and_weights(reference, stage_store, tmp_path):
    again = _project(tmp_path / "again", stage_store, vis=_auto(VIS), bc=_auto(BC))
    _stage(again, "pretrain_vis")
    _stage(again, "pretrain_bc")
    for stage in ("vis", "bc"):
        ref, new = _outputs(reference, stage), _outputs(again, stage)
        meta = f"models/{stage}"
        # every file (weights, metrics.json, per-epoch plots); pretrain_meta.json records the accelerator asked for
        assert {d: t for d, t in ref.items() if d != meta} == {d: t for d, t in new.items() if d != meta}, stage
        assert {k: v for k, v in ref[meta].items() if k != "pretrain_meta.json"} == {
            k: v for k, v in new[meta].items() if k != "pretrain_meta.json"
        }, stage
        ref_meta, new_meta = _meta(reference / meta), _meta(again / meta)
        new_meta["params"]["trainer"]["accelerator"] = ref_meta["params"]["trainer"]["accelerator"]
        assert ref_meta == new_meta, stage
    files = _tree(reference / "models/bc")
    assert {"encoder.pt", "actions_head.pt", "pretrain_meta.json"} <= set(files)
    assert "metrics.json" in _tree(reference / "reports/bc")
    # Not vacuous: training moved the weights away from the Level 0 encoder it started from.
    assert files["encoder.pt"] != _tree(reference / "models/vis")["encoder.pt"]


# ---------------------------------------------------------------------------------------- interruption

# Output to a pipe has no progress bars: one line per finished epoch. Epoch 1 runs once epoch 0's line is out.
_EPOCH_1_STARTED = re.compile(r"^epoch 0/\d+ ", re.M)


def _kill_mid_epoch(root: Path) -> str:
    """Start pretrain_bc, SIGKILL it once epoch 0 is logged (epoch 1 under way)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpretrain.stages.pretrain_bc"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=stage_env(),
    )
    seen = ""
    deadline = time.monotonic() + STAGE_TIMEOUT
    try:
        while time.monotonic() < deadline:
            chunk = proc.stdout.readline()
            if not chunk and proc.poll() is not None:
                break
            seen += chunk
            if _EPOCH_1_STARTED.search(chunk):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None and not _EPOCH_1_STARTED.search(seen):
            proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-epoch:\n{seen[-3000:]}"
    return seen


def test_killed_run_keeps_the_previous_export_and_its_rerun_equals_an_uninterrupted_run(
    reference, stage_store, tmp_path
):
    root = _project(tmp_path / "killed", stage_store)
    shutil.copytree(reference / "models/vis", root / "models/vis")
    shutil.copytree(reference / "reports/vis", root / "reports/vis")
    # An earlier, complete result in place (here: the reference's): a new export replaces it only once complete.
    shutil.copytree(reference / "models/bc", root / "models/bc")
    shutil.copytree(reference / "reports/bc", root / "reports/bc")
    seen = _kill_mid_epoch(root)
    assert "exported" not in seen
    assert _tree(root / "models/bc") == _tree(reference / "models/bc")  # untouched, byte for byte
    load_export(root / "models/bc")
    assert sorted(p.name for p in (root / "models").iterdir()) == ["bc", "vis"]  # no half-written export aside
    # Its reports too: never the previous export beside the killed run's epoch-0 metrics.
    assert _tree(root / "reports/bc") == _tree(reference / "reports/bc")

    stale = [root / "models/bc/stale_epoch.pt", root / "reports/bc/plots/metrics/val/stale.tsv"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("left over from the killed run\n")
    _stage(root, "pretrain_bc")
    assert not any(p.exists() for p in stale)
    assert _outputs(root, "bc") == _outputs(reference, "bc")
    assert _outputs(root, "vis") == _outputs(reference, "vis")  # the other stage's results are untouched
    meta, _ = load_export(root / "models/bc")
    assert meta["selection"]["epochs_run"] == BC["epochs"]


# ----------------------------------------------------------------------------------------------- DDP


def _flat(node: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_ddp_two_cpu_processes_give_the_metrics_of_one(stage_store, tmp_path):
    """One epoch of BC with strategy ddp, 2 CPU processes (gloo) vs 1 process on the same data. With lr ~ 0 and no
    dropout the weights stay put, so every epoch metric must equal the single-process one: the ranks' batches must
    together cover every train and val sample once and the per-rank sums must be reduced before the ratios.

    180 train samples / 25 = 8 batches (4 per rank); 60 val samples / 25 = 3 batches (odd: one rank validates
    one batch more than the other)."""
    bc = {
        "encoder_init": "none",
        "epochs": 1,
        "lr": 1e-12,
        "weight_decay": 0.0,
        "dropout": 0.0,
        "action_head_dropout": 0.0,
        "time_offsets_ms": [0, 100],
        "offset_weights": [1.0, 0.5],
        "batch_size": 25,
    }
    single = _project(tmp_path / "one", stage_store, bc={**bc, "trainer": {"accelerator": "cpu", "devices": 1}})
    ddp = _project(
        tmp_path / "ddp",
        stage_store,
        bc={**bc, "trainer": {"accelerator": "cpu", "devices": 2, "num_nodes": 1, "strategy": "ddp"}},
    )
    _stage(single, "pretrain_bc")
    run = _stage(ddp, "pretrain_bc")
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in run.stdout + run.stderr
    assert "CPU threads, 2 processes;" in run.stdout  # the stage's device line (rank 0)

    one = _flat(json.loads((single / "reports/bc/metrics.json").read_text()))
    two = _flat(json.loads((ddp / "reports/bc/metrics.json").read_text()))
    assert set(one) == set(two)
    support = {k: v for k, v in one.items() if k.startswith("val/support/")}
    assert sum(support.values()) == 60  # every val sample has a label at 0 ms
    for key in support:
        assert two[key] == one[key], key  # exact: each val sample counted once across the ranks
    metrics = {k for k in one if k.startswith(("train/", "val/", "best/"))}
    assert {"train/loss", "val/loss", "val/acc", "val/offset/+100ms/acc_action/accel"} <= metrics
    for key in metrics:
        expected = pytest.approx(one[key], rel=1e-6, abs=1e-9) if isinstance(one[key], float) else one[key]
        assert two[key] == expected, key
    assert one["epochs_run"] == two["epochs_run"] == 1
    meta, _ = load_export(ddp / "models/bc")  # written once, by rank 0, and it verifies
    assert meta["params"]["trainer"]["devices"] == 2 and meta["params"]["trainer"]["strategy"] == "ddp"


# ----------------------------------------------------------------------------------- artifact verification


def _meta(path: Path) -> dict:
    return json.loads((path / "pretrain_meta.json").read_text())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m, d: m["files"]["encoder.pt"].__setitem__("sha256", "0" * 64),
            r"encoder\.pt: sha256 .* does not match",
        ),
        (lambda m, d: m.__setitem__("head_input_dim", 5888), r"records head_input_dim 5888 but image size 36x36"),
        (lambda m, d: m.__setitem__("image_size", [120, 160]), r"records head_input_dim 288 but image size 120x160"),
        (lambda m, d: m.__setitem__("files", {}), r"files: dictionary should have at least 1 item"),
        (
            lambda m, d: m["files"].__setitem__("float_feature_extractor.pt", {"sha256": "0" * 64, "bytes": 1}),
            r"float_feature_extractor\.pt: listed in .* missing",
        ),
        (lambda m, d: m["files"].__setitem__("missing.pt", {"sha256": "0" * 64, "bytes": 1}), r"lists 'missing\.pt'"),
        (lambda m, d: (d / "encoder.pt").write_bytes(b"x" * 10), r"encoder\.pt: 10 bytes, pretrain_meta\.json records"),
    ],
    ids=["sha256", "head-input-dim", "image-size", "no-files", "missing-file", "not-a-weight-file", "file-replaced"],
)
def test_load_export_checks_metadata_against_the_files(reference, tmp_path, edit, message):
    export = tmp_path / "bc"
    shutil.copytree(reference / "models/bc", export)
    load_export(export)  # the real stage's export verifies as written
    meta = _meta(export)
    edit(meta, export)
    (export / "pretrain_meta.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match=message):
        load_export(export)


def test_load_export_refuses_a_non_float32_file_even_with_a_matching_hash(reference, tmp_path):
    import torch

    from tmpretrain.export import sha256_file

    export = tmp_path / "bc"
    shutil.copytree(reference / "models/bc", export)
    state = torch.load(export / "encoder.pt", weights_only=True)
    torch.save({k: v.double() for k, v in state.items()}, export / "encoder.pt")
    meta = _meta(export)
    # re-hashed by hand: still refused
    meta["files"]["encoder.pt"] = {
        "sha256": sha256_file(export / "encoder.pt"),
        "bytes": (export / "encoder.pt").stat().st_size,
    }
    (export / "pretrain_meta.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="are not float32"):
        load_export(export)
    (export / "pretrain_meta.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        load_export(export)
