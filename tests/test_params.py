"""Params validation for every group, before any work starts: an unknown key, a wrong type or a value outside its
allowed set stops the stage with one line naming the full key and what is allowed; nothing already produced is
touched. The shipped params.yaml is exactly the dataclass defaults."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from conftest import data_params, make_tree
from tmpretrain.cache import build_cache
from tmpretrain.errors import ParamsError
from tmpretrain.params import Params, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def _leaves(cls, prefix: str = ""):
    """(full key, field, type) of every scalar or list knob, nested groups included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], key)
        else:
            yield key, f, hints[f.name]


LEAVES = list(_leaves(Params))
GROUPS = {key.split(".")[0] for key, _, _ in LEAVES}


def _nest(key: str, value) -> dict:
    out: dict = {}
    node = out
    *parents, last = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


def _error(raw: dict) -> ParamsError:
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    return err.value


def test_every_group_and_nested_group_is_covered():
    assert GROUPS == {"synth", "data", "vis", "bc"}
    keys = {key for key, _, _ in LEAVES}
    for group in ("vis", "bc"):
        for nested in ("early_stopping.mode", "selection.metric", "trainer.strategy", "trainer.devices"):
            assert f"{group}.{nested}" in keys


def test_shipped_params_yaml_equals_the_dataclass_defaults():
    shipped = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert parse_params(shipped) == Params()
    # ... and it lists every knob, so `dvc exp run -S` can set any of them.
    listed = {key for key, _, _ in LEAVES if _get(shipped, key) is not _MISSING}
    assert listed == {key for key, _, _ in LEAVES}


_MISSING = object()


def _get(raw: dict, key: str):
    node = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


@pytest.mark.parametrize(("key", "f", "tp"), LEAVES, ids=[k for k, _, _ in LEAVES])
def test_every_knob_rejects_a_wrong_value_naming_the_key(key, f, tp):
    meta = f.metadata
    if tp is bool:
        err = _error(_nest(key, "yes"))
        assert "expected true or false" in str(err)
    elif tp is int:
        err = _error(_nest(key, 1.5))
        assert "expected an integer" in str(err)
    elif tp is float:
        err = _error(_nest(key, "fast"))
        assert "expected a number" in str(err)
    elif typing.get_origin(tp) is list:
        err = _error(_nest(key, 5))
        assert "expected a list" in str(err)
    elif "choices" in meta:
        err = _error(_nest(key, "no-such-choice"))
        assert "choose one of " + ", ".join(map(str, meta["choices"])) in str(err)
    else:  # free-form strings (paths, metric names) accept any scalar
        return
    assert err.key == key and str(err).startswith(f"params.yaml: {key}: ")


RANGED = [(key, f) for key, f, _ in LEAVES if "min" in f.metadata or "max" in f.metadata]


@pytest.mark.parametrize(("key", "f"), RANGED, ids=[k for k, _ in RANGED])
def test_every_bounded_knob_names_its_bounds(key, f):
    meta = f.metadata
    if "min" in meta:
        low = meta["min"]
        below = low if meta.get("strict") else (low - 1 if isinstance(f.default, int) else low - 0.5)
        err = _error(_nest(key, below))
        assert err.key == key and f"must be {'>' if meta.get('strict') else '>='} {low}" in str(err)
    if "max" in meta:
        high = meta["max"]
        err = _error(_nest(key, high + 1))
        assert err.key == key and f"must be <= {high}" in str(err)
    default = functools.reduce(getattr, key.split("."), Params())  # the group's own default, e.g. bc's patience
    assert parse_params(_nest(key, default)) == Params()  # the default itself is inside the bounds


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"synth": {"n_trakcs": 3}}, "synth.n_trakcs: unknown key; did you mean synth.n_tracks?"),
        ({"data": {"cache_dri": "x"}}, "data.cache_dri: unknown key; did you mean data.cache_dir?"),
        ({"vis": {"lr_rate": 0.1}}, "vis.lr_rate: unknown key; known keys: epochs, batch_size, lr, weight_decay"),
        ({"bc": {"n_stak": 2}}, "bc.n_stak: unknown key; did you mean bc.n_stack?"),
        ({"bc": {"trainer": {"device": 2}}}, "bc.trainer.device: unknown key; did you mean bc.trainer.devices?"),
        ({"vis": {"early_stopping": {"patients": 3}}}, "vis.early_stopping.patients: unknown key; did you mean"),
        ({"bc": {"selection": {"mod": "max"}}}, "bc.selection.mod: unknown key; did you mean bc.selection.mode?"),
        ({"model": {}}, "model: unknown key; known keys: synth, data, vis, bc"),
        ({"bc": {"trainer": 4}}, "bc.trainer: expected a mapping of accelerator, devices"),
        ({"bc": {"trainer": {"strategy": "dpp"}}}, "choose one of auto, ddp, ddp_spawn, ddp_notebook, fsdp"),
        ({"vis": {"trainer": {"precision": 16}}}, "vis.trainer.precision: '16' is not allowed; choose one of"),
        ({"bc": {"time_offsets_ms": [0, "10"]}}, "bc.time_offsets_ms[1]: expected an integer"),
        ({"bc": {"time_offsets_ms": []}}, "bc.time_offsets_ms: must list at least one offset"),
        ({"bc": {"time_offsets_ms": [0, 0], "offset_weights": [1, 1]}}, "offsets must be distinct"),
        ({"bc": {"offset_weights": [1.0]}}, "bc.offset_weights: has 1 values but bc.time_offsets_ms has 4"),
        ({"bc": {"offset_weights": [0, 0, 0, 0]}}, "weights must be >= 0 with a positive sum"),
        ({"bc": {"export_offset_ms": 20}}, "bc.export_offset_ms: 20 is not among bc.time_offsets_ms"),
        ([1, 2], "params.yaml must be a mapping of groups"),
    ],
)
def test_messages_name_the_key_and_what_is_allowed(raw, message):
    assert message in str(_error(raw))


def test_yaml_scalars_that_mean_strings():
    params = parse_params({"vis": {"image_normalization": 1}, "bc": {"image_normalization": "01"}})
    assert params.vis.image_normalization == params.bc.image_normalization == "01"
    assert parse_params({"bc": {"lr": 1}}).bc.lr == 1.0  # an integer where a float is asked is fine


def test_params_file_problems(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("bc: {epochs: [1,\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("")
    assert load_params(tmp_path / "params.yaml") == Params()


# ---------------------------------------------------------------------------------- stages, end to end


@pytest.fixture
def project(tmp_path) -> Path:
    """A project dir with a tiny cache and earlier outputs of every training stage (stand-ins for results)."""
    tree = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=1, n_frames=12, size=40)
    build_cache(data_params(tmp_path, tree, image_height=36, image_width=36), progress=False)
    for d in ("models/vis", "models/bc", "reports/vis", "reports/bc"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "earlier.result").write_text(f"an earlier run's {d}\n")
    return tmp_path


def _snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for d in ("models", "reports", "cache")
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }


def _write_params(root: Path, bc: dict | None = None, vis: dict | None = None, data: dict | None = None) -> None:
    raw = {"data": {"cache_dir": "cache", "replays_dir": "replays", **(data or {})}}
    raw["vis"] = vis or {"epochs": 1}
    raw["bc"] = bc or {"epochs": 1, "encoder_init": "none"}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))


def _run(root: Path, stage: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(
        [sys.executable, "-m", f"tmpretrain.stages.{stage}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_a_bad_param_stops_the_stage_in_one_line_and_touches_nothing(project):
    before = _snapshot(project)
    _write_params(project, bc={"epochs": 1, "trainer": {"strategy": "dpp"}})
    run = _run(project, "pretrain_bc")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert (
        "error: params.yaml: bc.trainer.strategy: 'dpp' is not allowed; "
        "choose one of auto, ddp, ddp_spawn, ddp_notebook, fsdp" in run.stderr
    )
    assert _snapshot(project) == before


@pytest.mark.parametrize(
    ("stage", "params", "message"),
    [
        # Cross-field and data-dependent checks also come before the old outputs are cleared.
        ("pretrain_bc", {"bc": {"dense_hidden_dimension": 512, "encoder_init": "none"}}, "bc.dense_hidden_dimension"),
        ("pretrain_bc", {"bc": {"encoder_init": "vis"}}, "bc.encoder_init: 'vis' needs models/vis/encoder.pt"),
        ("pretrain_bc", {"bc": {"use_floats": True, "encoder_init": "none"}}, "bc.use_floats: the cache has no float"),
        ("pretrain_vis", {"vis": {"task": "mae"}}, "vis.task: 'mae' is not allowed; choose one of autoencoder, vae"),
        ("pretrain_vis", {"vis": {"batch_size": 1}}, "vis.batch_size: 1 is too small; must be >= 2"),
        # A metric name that the run never logs would otherwise fail after the first epoch, outputs gone.
        (
            "pretrain_bc",
            {"bc": {"encoder_init": "none", "selection": {"metric": "val/los"}}},
            "bc.selection.metric: 'val/los' is not a metric of this run; did you mean val/loss",
        ),
        (
            "pretrain_vis",
            {"vis": {"early_stopping": {"enabled": True, "monitor": "val/acc"}}},
            "vis.early_stopping.monitor: 'val/acc' is not a metric of this run",
        ),
        ("ingest", {"data": {"val_fraction": 0.95}}, "data.val_fraction: 0.95 is too large; must be <= 0.9"),
        ("ingest", {"data": {"replays_dir": "nowhere"}}, "data.replays_dir"),
    ],
    ids=[
        "bc-hidden",
        "bc-encoder-init",
        "bc-floats",
        "vis-task",
        "vis-batch",
        "bc-selection-metric",
        "vis-early-stopping-monitor",
        "data-fraction",
        "data-tree",
    ],
)
def test_stage_level_checks_happen_before_outputs_are_cleared(project, stage, params, message, capsys):
    """The stage entry points in process (the subprocess test above covers the no-traceback exit)."""
    import importlib

    (project / "models/vis/earlier.result").unlink()  # so that encoder_init: vis finds no encoder
    before = _snapshot(project)
    _write_params(project, **params)
    main = importlib.import_module(f"tmpretrain.stages.{stage}").main
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert _snapshot(project) == before


def test_a_partial_nested_group_keeps_its_stage_defaults():
    # bc stops early by default; overriding only its patience must not switch that off
    params = parse_params({"bc": {"early_stopping": {"patience": 5}}})
    assert params.bc.early_stopping.enabled is True and params.bc.early_stopping.patience == 5
    assert parse_params({"vis": {"early_stopping": {"patience": 5}}}).vis.early_stopping.enabled is False
