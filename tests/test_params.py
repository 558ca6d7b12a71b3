"""Params validation for every group, before any work starts: an unknown key, a wrong type, a non-finite or
out-of-range number, a cross-field conflict or a missing accelerator stops the stage with one line naming the full
key and what is allowed; nothing already produced is touched. The shipped params.yaml is exactly the schema's
defaults, and docs/params.md is exactly the schema's reference."""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import data_params, make_tree
from support.faults import _kind, _schema_leaves
from tmpretrain.errors import ParamsError
from tmpretrain.frame_store import build_frame_store
from tmpretrain.params import (
    MAX_SEED,
    Params,
    load_params,
    markdown_reference,
    parse_params,
    read_params_file,
    set_nested,
)

REPO = Path(__file__).resolve().parents[1]


LEAVES = _schema_leaves()  # the same walk and kinds the fault table uses
KEYS = [key for key, _ in LEAVES]


def _bounds(field) -> dict:
    return {attr: getattr(m, attr) for m in field.metadata for attr in ("ge", "gt", "le", "lt") if hasattr(m, attr)}


def _nest(key: str, value) -> dict:
    return set_nested({}, key, value)


def _error(raw) -> ParamsError:
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    return err.value


def _default(key: str):
    return functools.reduce(getattr, key.split("."), Params())  # the group's own default, e.g. bc's patience


def test_every_group_and_nested_group_is_covered():
    assert {key.split(".")[0] for key in KEYS} == {"synth", "data", "vis", "bc", "eval", "rl"}
    for group in ("vis", "bc"):
        for nested in ("early_stopping.mode", "selection.metric", "trainer.strategy", "trainer.devices"):
            assert f"{group}.{nested}" in KEYS
    assert all(field.description for _, field in LEAVES), "every key has a description for docs/params.md"


def test_shipped_params_yaml_equals_the_schema_defaults():
    shipped = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert parse_params(shipped) == Params()
    # ... and it lists every knob, so `dvc exp run -S` can set any of them.
    assert {key for key in KEYS if _get(shipped, key) is not _MISSING} == set(KEYS)
    assert Params().bc.trainer.accelerator == Params().vis.trainer.accelerator == "auto"


def test_drift_docs_params_md_is_the_generated_reference():
    """docs/params.md cannot drift from the schema: regenerate with the command in its header."""
    assert (REPO / "docs/params.md").read_text(encoding="utf-8") == markdown_reference()
    for key in KEYS:
        assert f"| `{key}` |" in markdown_reference()


_MISSING = object()


def _get(raw: dict, key: str):
    node = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


WRONG_VALUES = {
    "bool": [("yes", "expected true or false"), (1, "expected true or false"), (None, "expected true or false")],
    "int": [
        (1.5, "expected an integer"),
        (True, "expected an integer"),
        ("3", "expected an integer"),
        (float("nan"), "expected an integer"),
        ([1], "expected an integer"),
    ],
    "float": [
        ("fast", "expected a number"),
        (True, "expected a number"),
        (float("nan"), "expected a finite number, got nan"),
        (float("inf"), "expected a finite number, got inf"),
        (float("-inf"), "expected a finite number, got -inf"),
        ("nan", "expected a finite number, got 'nan'"),
        ([0.1], "expected a number"),
        (10**400, "is too large for a number"),
    ],
    "list": [(5, "expected a list"), ("[0, 10]", "expected a list"), ({"a": 1}, "expected a list")],
    "choice": [("no-such-choice", "is not allowed; choose one of "), ([1], "is not allowed; choose one of ")],
    "path": [(["data/cache"], "expected a path"), ("", "expected a path"), (3, "expected a path"), ("a\0b", "path")],
    "text": [(["val/loss"], "expected a non-empty string"), ("", "expected a non-empty string")],
}
WRONG = [(key, value, message) for key, field in LEAVES for value, message in WRONG_VALUES[_kind(field)]]


@pytest.mark.parametrize(("key", "value", "message"), WRONG, ids=[f"{k}={v!r}"[:60] for k, v, _ in WRONG])
def test_every_knob_refuses_a_wrong_value_naming_the_key(key, value, message):
    err = _error(_nest(key, value))
    assert message in str(err)
    assert err.key == key or err.key.startswith(f"{key}["), err  # the key itself (a list item: key[i])
    assert str(err).startswith(f"params.yaml: {err.key}: ") and "\n" not in str(err)


def test_choices_are_listed():
    err = _error({"bc": {"trainer": {"strategy": "dpp"}}})
    assert str(err).endswith("'dpp' is not allowed; choose one of auto, ddp, ddp_spawn, ddp_notebook, fsdp")


BOUNDED = [(key, field) for key, field in LEAVES if _bounds(field)]


@pytest.mark.parametrize(("key", "field"), BOUNDED, ids=[k for k, _ in BOUNDED])
def test_every_bounded_knob_names_its_bounds(key, field):
    b = _bounds(field)
    integer = _kind(field) == "int"
    step = 1 if integer else 0.5
    if "ge" in b or "gt" in b:
        low = b.get("ge", b.get("gt"))
        below = low - step if "ge" in b else low
        err = _error(_nest(key, below))
        assert err.key == key and f"is too small; must be {'>=' if 'ge' in b else '>'} " in str(err)
    if "le" in b:
        err = _error(_nest(key, b["le"] + step))
        assert err.key == key and "is too large; must be <= " in str(err)
        try:  # the bound itself is allowed (a cross-field rule may still refuse it: export offset, A_head width)
            parse_params(_nest(key, b["le"]))
        except ParamsError as err:
            assert "is too large" not in str(err), err
    assert parse_params(_nest(key, _default(key))) == Params()  # the default itself is inside the bounds


def test_every_integer_is_bounded_and_every_seed_fits_lightning():
    """A huge integer must be an answer, not an OverflowError (or a seed Lightning silently replaces by 0)."""
    for key, field in LEAVES:
        if _kind(field) == "int":
            assert "le" in _bounds(field), key
        if key.endswith("seed"):
            assert _bounds(field) == {"ge": 0, "le": MAX_SEED}, key
    assert "must be <= 100000" in str(_error({"bc": {"epochs": 10**30}}))


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
        # the same name one level down, and a dotted key written flat: the hint names the full key
        ({"bc": {"patience": 3}}, "bc.patience: unknown key; did you mean bc.early_stopping.patience?"),
        ({"bc": {"accelerator": "cpu"}}, "bc.accelerator: unknown key; did you mean bc.trainer.accelerator?"),
        ({"lr": 0.1}, "lr: unknown key; did you mean vis.lr or bc.lr?"),
        ({"bc.lr": 0.1}, "bc.lr: unknown key; write it nested (bc: {lr: ...})"),
        ({"model": {}}, "model: unknown key; known keys: synth, data, vis, bc, eval"),
        ({1: {}}, "params.yaml: 1: unknown key"),
        ({"bc": {"trainer": 4}}, "bc.trainer: expected a mapping of accelerator, devices"),
        ({"bc": None}, "bc: expected a mapping of epochs"),
        ({"vis": {"trainer": {"precision": 16}}}, "vis.trainer.precision: 16 is not allowed; choose one of 32-true"),
        ({"bc": {"time_offsets_ms": [0, "10"]}}, "bc.time_offsets_ms[1]: expected an integer, got '10'"),
        ({"bc": {"time_offsets_ms": [0, 10**6]}}, "bc.time_offsets_ms[1]: 1000000 is too large; must be <= 10000"),
        ({"bc": {"offset_weights": [1, math.nan, 1, 1]}}, "bc.offset_weights[1]: expected a finite number, got nan"),
        ({"bc": {"offset_weights": [1, -1, 1, 1]}}, "bc.offset_weights[1]: -1 is too small; must be >= 0"),
        ({"bc": {"time_offsets_ms": []}}, "bc.time_offsets_ms: must list at least one offset"),
        ({"bc": {"time_offsets_ms": [0, 0], "offset_weights": [1, 1]}}, "bc.time_offsets_ms: offsets must be distinct"),
        ({"bc": {"offset_weights": [1.0]}}, "bc.offset_weights: has 1 values but bc.time_offsets_ms has 4"),
        ({"bc": {"offset_weights": [0, 0, 0, 0]}}, "bc.offset_weights: weights must be >= 0 with a positive sum"),
        ({"bc": {"export_offset_ms": 20}}, "bc.export_offset_ms: 20 is not among bc.time_offsets_ms"),
        ({"bc": {"dense_hidden_dimension": 512}}, "bc.dense_hidden_dimension: 512 gives an A_head hidden width"),
        (
            {"bc": {"use_floats": True, "trainer": {"cache_on_device": True}}},
            "bc.trainer.cache_on_device: is not supported together with bc.use_floats",
        ),
        ({"data": {"val_fraction": 0}}, "data.val_fraction: 0.0 is too small; must be > 0"),
        ({"data": {"cache_dir": ["data/cache"]}}, "data.cache_dir: expected a path (a non-empty string)"),
        ({"eval": {"track_seeds": [3, 3]}}, "eval.track_seeds: seeds must be distinct, got [3, 3]"),
        ({"eval": {"rollouts_per_track": 0}}, "eval.rollouts_per_track: 0 is too small; must be >= 1"),
        ([1, 2], "params.yaml must be a mapping of groups (synth, data, vis, bc, eval, rl)"),
    ],
)
def test_messages_name_the_key_and_what_is_allowed(raw, message):
    assert message in str(_error(raw))


def test_text_is_never_a_number():
    """The file is read as DVC reads it (YAML 1.2: `1e-3` is already a number), so a string at a number key is
    what the user quoted, or what `dvc exp run -S` wrote quoted: refused, as `dvc exp show` shows it as text."""
    assert parse_params({"bc": {"lr": 1}}).bc.lr == 1.0 and isinstance(parse_params({"bc": {"lr": 1}}).bc.lr, float)
    assert parse_params({"bc": {"epochs": 3.0}}).bc.epochs == 3  # an integral float is the integer it spells
    for text in ("1e-3", "5E+2", "1e-3x", "0x10", "1_000", ".nan", "inf", "1e999"):
        with pytest.raises(ParamsError, match="bc.lr"):
            parse_params({"bc": {"lr": text}})


def test_yaml_scalars_that_mean_strings():
    params = parse_params({"vis": {"image_normalization": 1}, "bc": {"image_normalization": "01"}})
    assert params.vis.image_normalization == params.bc.image_normalization == "01"
    assert "is not allowed" in str(_error({"bc": {"image_normalization": True}}))  # `yes` is not `01`


def test_params_files_as_yaml_writes_them(tmp_path):
    """The text a user writes, read as DVC reads it (YAML 1.2), to the answer."""
    path = tmp_path / "params.yaml"

    def load(text: str) -> Params:
        path.write_text(text, encoding="utf-8")
        return load_params(path)

    assert load("bc: {lr: 1e-3}\n").bc.lr == 0.001
    assert load("vis: {image_normalization: 01}\n").vis.image_normalization == "01"
    for text, message in [
        ("bc: {lr: .nan}\n", "bc.lr: expected a finite number, got nan"),
        ("bc: {dropout: .inf}\n", "bc.dropout: expected a finite number, got inf"),
        ("data: {cache_dir: [data/cache]}\n", "data.cache_dir: expected a path"),
        ("bc: {epochs: yes}\n", "bc.epochs: expected an integer, got 'yes'"),
        ("bc: {epochs: '1e3'}\n", "bc.epochs: expected an integer, got '1e3'"),
        ("bc: {lr: '1e-3'}\n", "bc.lr: expected a number, got '1e-3'"),
        ("data: {strict: yes}\n", "data.strict: expected true or false, got 'yes'"),
        ("bc:\n  lr: 0.1\n  lr: 0.2\n", "not valid YAML: duplicate key 'lr' (line 3, column 3)"),
        ("bc: {lr: 0.1}\nbc: {epochs: 2}\n", "duplicate key 'bc'"),
        ("bc: {epochs: [1,\n", "not valid YAML"),
        ("bc:\n", "bc: expected a mapping"),
        ("- 1\n", "must be a mapping of groups"),
        ("bc: " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
    ]:
        with pytest.raises(ParamsError) as err:
            load(text)
        assert message in str(err.value) and "\n" not in str(err.value), (text[:40], str(err.value))
    path.write_bytes(b"bc: {target: \xff}\n")
    with pytest.raises(ParamsError, match="cannot be read as UTF-8"):
        load_params(path)


@pytest.mark.parametrize(
    ("text", "key", "meant"),
    [
        ("bc: {lr: 1e-3}\n", "bc.lr", 0.001),  # YAML 1.1: the string '1e-3'
        ("vis: {vae_beta: 5E+2}\n", "vis.vae_beta", 500.0),  # YAML 1.1: the string '5E+2'
        ("bc: {epochs: 017}\n", "bc.epochs", 17),  # YAML 1.1: octal, 15
        ("bc: {epochs: 0o17}\n", "bc.epochs", 15),  # YAML 1.1: the string '0o17'
        ("bc: {batch_size: 1_000}\n", "bc.batch_size", 1000),
        ("data: {cache_dir: no}\n", "data.cache_dir", "no"),  # YAML 1.1: false
        ("synth: {out_dir: on}\n", "synth.out_dir", "on"),  # YAML 1.1: true
    ],
)
def test_params_mean_what_dvc_reads(tmp_path, text, key, meant):
    """Every value is the one DVC reads (and `dvc exp show` shows): DVC's own parser is the reference."""
    from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    dvc_value = functools.reduce(lambda d, k: d[k], key.split("."), dvc_parse_yaml(text, str(path)))
    assert dvc_value == meant and type(dvc_value) is type(meant)
    raw = functools.reduce(lambda d, k: d[k], key.split("."), read_params_file(path))
    assert raw == dvc_value and type(raw) is type(dvc_value)
    got = functools.reduce(getattr, key.split("."), load_params(path))
    assert got == dvc_value and type(got) is type(dvc_value)


def test_yes_where_true_or_false_goes_is_refused_as_dvc_reads_it(tmp_path):
    from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

    path = tmp_path / "params.yaml"
    path.write_text("data: {strict: yes}\n", encoding="utf-8")
    assert dvc_parse_yaml(path.read_text(), str(path)) == {"data": {"strict": "yes"}}  # text, not true
    with pytest.raises(ParamsError, match=r"data.strict: expected true or false, got 'yes'"):
        load_params(path)


def test_params_file_problems(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("")
    assert load_params(tmp_path / "params.yaml") == Params()


ALIAS_BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # The "billion laughs" at bc.lr: expanded, 9**9 lists (a minute, then MemoryError); refused at the first alias.
        (lambda p: p.write_text("l0: &l0 [lol]\n" + ALIAS_BOMB + "bc: {lr: *l9}\n"), "an alias (*name); write the"),
        (lambda p: p.write_text("bc: &b {lr: 0.1}\nvis: *b\n"), "an alias (*name); write the value itself (line 2"),
        (os.mkfifo, "cannot be read as UTF-8 text (not a regular file: a FIFO (named pipe))"),
        (lambda p: p.symlink_to("/dev/zero"), "(not a regular file: a character device)"),
        (lambda p: p.write_bytes(b"#" * (2 << 20)), "(2,097,152 bytes, larger than this file can be (1,048,576"),
    ],
    ids=["alias-bomb", "alias", "fifo", "dev-zero", "huge"],
)
def test_params_files_that_would_hang_or_exhaust_memory_are_one_line(tmp_path, make, message):
    path = tmp_path / "params.yaml"
    make(path)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value).startswith(f"params.yaml: <file>: {path}") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_a_partial_nested_group_keeps_its_stage_defaults():
    # bc stops early by default; overriding only its patience must not switch that off
    params = parse_params({"bc": {"early_stopping": {"patience": 5}}})
    assert params.bc.early_stopping.enabled is True and params.bc.early_stopping.patience == 5
    assert parse_params({"vis": {"early_stopping": {"patience": 5}}}).vis.early_stopping.enabled is False
    assert parse_params({"bc": {"trainer": {"devices": 1}}}).bc.trainer == Params().bc.trainer


def test_groups_are_constructed_by_keyword_and_validated():
    from tmpretrain.params import DataParams, SynthParams

    assert DataParams(cache_dir="c", workers=1).cache_dir == "c"
    with pytest.raises(Exception, match="val_fraction"):
        DataParams(val_fraction=0.0)
    assert SynthParams(seed=3).model_dump()["seed"] == 3


@pytest.mark.parametrize("group", ["vis", "bc"])
def test_an_accelerator_this_machine_lacks_is_one_line(group):
    import torch

    key = f"{group}.trainer.accelerator"
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        assert parse_params({group: {"trainer": {"accelerator": "gpu", "devices": n}}})
        err = _error({group: {"trainer": {"accelerator": "cuda", "devices": n + 1}}})
        assert err.key == f"{group}.trainer.devices" and f"this machine has {n}" in str(err)
    else:
        for name in ("gpu", "cuda"):
            err = _error({group: {"trainer": {"accelerator": name}}})
            assert err.key == key and "asks for a CUDA GPU but torch finds none on this machine" in str(err)
            assert str(err).endswith("use auto or cpu")
    if not torch.backends.mps.is_available():
        assert "asks for an Apple GPU" in str(_error({group: {"trainer": {"accelerator": "mps"}}}))
    assert parse_params({group: {"trainer": {"accelerator": "auto"}}})


# --------------------------------------------------------------------------------- never a traceback

_JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["1e-3", "nan", "-1", "01", "", ".inf", "auto"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=_JUNK)
@example(key="rl.epsilon_schedule", value=[[]])  # once an IndexError: a point's step read before its length
def test_any_value_at_any_key_is_a_params_or_a_params_error_naming_that_key(key, value):
    """Property: whatever YAML can hold, at whatever key, the answer is valid Params or one ParamsError about
    that key (or the cross-field key it breaks); never another exception."""
    try:
        params = parse_params(_nest(key, value))
    except ParamsError as err:
        group = key.split(".")[0]
        assert err.key.startswith(group) and "\n" not in str(err), (key, value, str(err))
        return
    got = functools.reduce(getattr, key.split("."), params)
    if isinstance(got, float):
        assert math.isfinite(got)
        assert got == float(value)  # the number written, not another
    elif not isinstance(value, str) or got != "01":
        assert got == value and type(got) is type(value) or (isinstance(value, float) and got == int(value)), (
            key,
            value,
            got,
        )


# ---------------------------------------------------------------------------------- stages, end to end


@pytest.fixture
def project(tmp_path) -> Path:
    """A project dir with a tiny cache and earlier outputs of every training stage (stand-ins for results)."""
    tree = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=1, n_frames=12, size=40)
    build_frame_store(data_params(tmp_path, tree, image_height=36, image_width=36), progress=False)
    for d in ("models/vis", "models/bc", "reports/vis", "reports/bc"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "earlier.result").write_text(f"an earlier run's {d}\n")
    return tmp_path


def _snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for d in ("models", "reports", "cache", "data")
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }


def _write_params(root: Path, bc: dict | None = None, vis: dict | None = None, data: dict | None = None, **groups):
    raw = {"data": {"cache_dir": "cache", "replays_dir": "replays", **(data or {})}}
    raw["vis"] = vis or {"epochs": 1}
    raw["bc"] = bc or {"epochs": 1, "encoder_init": "none"}
    raw.update(groups)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))


def _run(root: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(
        [sys.executable, "-m", f"tmpretrain.stages.{stage}", *args],
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
    ("env_id", "message"),
    [
        (
            "tmpretrain/SynthTrack-v9",
            "'tmpretrain/SynthTrack-v9' is not a registered Gymnasium id (did you mean 'tmpretrain/SynthTrack-v0'?)",
        ),
        (
            "no_such_module:Track-v0",
            "'no_such_module:Track-v0': there is no module 'no_such_module' to register 'Track-v0'",
        ),
    ],
)
def test_validate_refuses_an_env_id_evaluate_could_not_make(project, env_id, message):
    """DVC removes reports/eval before evaluate starts: an eval.env nobody can make must fail in validate, which
    finds the module without importing it; a registered id (Gymnasium's own) and the simulator's pass."""
    _write_params(project, eval={"env": env_id})
    before = _snapshot(project)
    run = _run(project, "validate")
    assert run.returncode == 1 and run.stderr == f"error: params.yaml: eval.env: {message}\n"
    assert _snapshot(project) == before
    for fine in ("CartPole-v1", "tmpretrain/SynthTrack-v0", "gymnasium.envs.classic_control:CartPole-v1"):
        _write_params(project, eval={"env": fine})
        assert _run(project, "validate").returncode == 0, fine


def test_the_validate_stage_is_fast_and_writes_a_constant_file(project):
    """The first DVC stage: no torch import, one line on bad params, a constant output on good ones."""
    _write_params(project, bc={"lr": ".nan"})  # the string: YAML would quote it; the float comes next
    (project / "params.yaml").write_text("bc: {lr: .nan}\n")
    before = _snapshot(project)
    run = _run(project, "validate")
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == "error: params.yaml: bc.lr: expected a finite number, got nan\n"
    assert _snapshot(project) == before and not (project / "data/params.validated").exists()

    _write_params(project)
    probe = "import sys; from tmpretrain.stages.validate import main; main(); print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["validate: params.yaml OK (synth, data, vis, bc, eval, rl)", "False"]
    content = (project / "data/params.validated").read_bytes()
    _write_params(project, bc={"epochs": 7, "encoder_init": "none"})
    assert _run(project, "validate").returncode == 0
    assert (project / "data/params.validated").read_bytes() == content  # downstream stages see no change


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
        # What the code needs, checked by validate, before DVC removes the outputs of the stages that would refuse.
        (
            "validate",
            {"data": {"image_height": 20}},
            "data.image_height: 20 is too small for the agent's encoder; must be >= 34",
        ),
        ("validate", {"data": {"image_width": 33}}, "data.image_width: 33 is too small for the agent's encoder"),
        (
            "validate",
            {"data": {"replays_dir": "/nonexistent"}},
            "data.replays_dir: '/nonexistent' is not a folder, and no stage makes it (synthesize writes synth.out_dir",
        ),
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
        "validate-image-height",
        "validate-image-width",
        "validate-no-capture-tree",
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
