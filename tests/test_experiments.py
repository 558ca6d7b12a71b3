"""Presets resolve to valid params, and DVC keeps every experiment's own outputs (the original study lost
v2_next_tick when the n_stack=3 run overwrote its directory; here two experiments writing the same paths both
survive)."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from support.projects import (
    PRESETS,
    ROOT,
    dvc,
    exp_metrics,
    fake_exp_show,
    git,
    make_project,
    sha256,
)
from tmpretrain.cli import main
from tmpretrain.experiments import (
    BC_METRICS,
    EVAL_METRICS,
    PresetError,
    comparison_table,
    exp_run_command,
    exp_show,
    experiment_rows,
    format_table,
    load_presets,
    quote,
    resolve,
    runnable,
    select,
    stray_params,
)
from tmpretrain.params import parse_params, read_params_file
from tmpretrain.yamlio import parse_yaml

SEED_RUNS = [
    "v1",
    "v1.1",
    "v1.2",
    "v2",
    "v2_next_tick",
    "v2_next_tick_stack3",
    "v2_multi_offset",
    "v2_multi_offset_ahead",
    "v2_multi_offset_ahead_tuned",
    "v2_multi_offset_ahead_reg",
    "v2_multi_offset_ahead_dropout",
    "v2_multi_offset_ahead_dropout_inner",
]


def apply_overrides(params: dict, overrides: list[str]) -> dict:
    """What `dvc exp run -S` does to params.yaml, for the values presets use (YAML scalars and lists)."""
    params = copy.deepcopy(params)
    for ov in overrides:
        key, value = ov.split("=", 1)
        *path, last = key.split(".")
        node = params
        for part in path:
            node = node[part]
        assert last in node, f"{key} is not a params.yaml key"
        node[last] = parse_yaml(value)  # the scalars and lists presets use read as DVC writes them
    return params


def presets_params() -> dict:
    data = load_presets(PRESETS)
    base = read_params_file(ROOT / "params.yaml")
    return {name: parse_params(apply_overrides(base, resolve(data, name))) for name in runnable(data)}


def test_every_seed_run_is_a_preset_with_valid_params():
    data = load_presets(PRESETS)
    names = runnable(data)
    assert names[: len(SEED_RUNS)] == SEED_RUNS
    params = presets_params()
    assert set(params) == set(names)
    for family, members in data["families"].items():
        assert set(members) <= set(names), family


def test_presets_carry_the_seed_settings():
    p = presets_params()
    # v1 / v1.1 / v1.2: vis/v1 on [0, 1]; only v1 has early stopping and 25 epochs
    assert (p["v1"].bc.epochs, p["v1"].bc.early_stopping.enabled, p["v1"].bc.early_stopping.patience) == (25, True, 10)
    assert (p["v1.1"].bc.epochs, p["v1.1"].bc.early_stopping.enabled, p["v1.1"].bc.lr) == (50, False, 0.0005)
    for name in ("v1", "v1.1", "v1.2"):
        assert p[name].vis.image_normalization == "01"
    assert p["v1.1"].bc.image_normalization == "01" and p["v1.2"].bc.image_normalization == "iqn"
    for name in SEED_RUNS[3:]:
        assert (p[name].vis.image_normalization, p[name].bc.image_normalization) == ("iqn", "iqn"), name
        assert p[name].vis.epochs == 50 and not p[name].vis.early_stopping.enabled
    assert p["v2"].bc.time_offsets_ms == [0] and not p["v2"].bc.use_actions_head
    assert p["v2_next_tick"].bc.target == "next_tick" and p["v2_next_tick"].bc.n_stack == 1
    assert p["v2_next_tick_stack3"].bc.n_stack == 3 and p["v2_next_tick_stack3"].bc.target == "next_tick"
    mo = p["v2_multi_offset"].bc
    assert (mo.time_offsets_ms, mo.offset_weights, mo.use_actions_head) == (
        [-10, 0, 10, 100],
        [0.2, 1.0, 0.5, 0.3],
        False,
    )
    assert p["v2_multi_offset_ahead"].bc.use_actions_head and p["v2_multi_offset_ahead"].bc.dropout == 0.0
    t = p["v2_multi_offset_ahead_tuned"].bc
    assert (t.lr, t.weight_decay, t.early_stopping.enabled, t.early_stopping.patience) == (0.0002, 0.01, True, 10)
    r = p["v2_multi_offset_ahead_reg"].bc
    assert (r.lr, r.weight_decay, r.early_stopping.enabled, r.epochs, r.dropout) == (0.0001, 0.02, False, 50, 0.0)
    assert p["v2_multi_offset_ahead_dropout"].bc.dropout == 0.2
    assert p["v2_multi_offset_ahead_dropout"].bc.action_head_dropout == 0.0
    assert p["v2_multi_offset_ahead_dropout_inner"].bc.action_head_dropout == 0.1


def test_every_preset_sets_the_same_keys():
    """So that running presets one after another in one workspace never inherits a key from the previous one."""
    data = load_presets(PRESETS)
    keysets = {name: {ov.split("=", 1)[0] for ov in resolve(data, name)} for name in runnable(data)}
    first = keysets["v1"]
    for name, keys in keysets.items():
        assert keys == first, (name, keys ^ first)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("presets:\n  a: {set: [bc.lr=0.1]}\n  a: {set: [bc.lr=0.2]}\n", "duplicate key 'a' (line 3, column 3)"),
        ("presets:\n  a:\n    set: [bc.lr=0.1]\n    set: []\n", "duplicate key 'set' (line 4, column 5)"),
        ("families: {}\npresets: {a: {}}\nfamilies: {}\n", "duplicate key 'families' (line 3, column 1)"),
        ("presets:\n  a: &a {set: [bc.lr=0.1]}\n  b: *a\n", "an alias (*name); write the value itself (line 3"),
    ],
    ids=["preset-twice", "set-twice", "top-level-twice", "alias"],
)
def test_presets_files_with_a_key_twice_or_an_alias_are_refused_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "presets.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PresetError) as err:
        load_presets(path)
    assert str(err.value).startswith(f"{path}: not valid YAML (") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_presets_are_read_as_dvc_reads_yaml(tmp_path):
    """presets.yaml and params.yaml are one dialect, DVC's (YAML 1.2): DVC's own parser is the reference."""
    from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

    text = "presets:\n  a: {set: [bc.lr=0.1], note: yes, lr: 1e-3, n: 017}\nfamilies: {f: [a]}\n"
    path = tmp_path / "presets.yaml"
    path.write_text(text, encoding="utf-8")
    ours, dvcs = load_presets(path), dvc_parse_yaml(text, str(path))
    assert ours == dvcs
    assert ours["presets"]["a"]["note"] == "yes" and ours["presets"]["a"]["lr"] == 0.001
    assert ours["presets"]["a"]["n"] == 17


def test_command_and_selection():
    data = load_presets(PRESETS)
    cmd = exp_run_command(data, "v1.2", queue=True, extra=["-S", "bc.batch_size=4096"])
    assert cmd[:6] == ["dvc", "exp", "run", "-n", "v1.2", "--queue"]
    assert cmd[-2:] == ["-S", "bc.batch_size=4096"]
    assert "vis.image_normalization='01'" in cmd
    assert select(data, ["n-stack", "v2"]) == ["v2_next_tick", "v2_next_tick_stack3", "v2"]
    assert select(data, ["all"]) == runnable(data) and select(data, ["all"])[:12] == SEED_RUNS
    with pytest.raises(PresetError, match="unknown preset"):
        resolve(data, "v3")


def test_cli_show_and_dry_run(capsys):
    assert main(["--presets", str(PRESETS), "show", "v2_next_tick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dvc exp run -n v2_next_tick ") and "-S bc.target=next_tick" in out
    assert main(["--presets", str(PRESETS), "queue", "n-stack", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("--queue") == 2 and "dvc queue start" in out
    assert main(["--presets", str(PRESETS), "run", "nope", "--dry-run"]) == 1
    # the console command as installed
    done = subprocess.run(
        [sys.executable, "-m", "tmpretrain.cli", "--presets", str(PRESETS), "show", "v2"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.startswith("dvc exp run -n v2 ")


def test_table_of_every_preset_fits_120_columns():
    data = load_presets(PRESETS)
    base = read_params_file(ROOT / "params.yaml")
    show = fake_exp_show({name: apply_overrides(base, resolve(data, name)) for name in runnable(data)})
    rows = experiment_rows(show)
    assert [r["name"] for r in rows][:3] == ["workspace", "main", "v1"]
    df, short = comparison_table(rows, SEED_RUNS)
    assert list(df.index) == SEED_RUNS
    # only the params that differ between the rows, e.g. not bc.n_stack... unless presets differ in it
    assert "bc.target" in df and "bc.seed" not in df and "vis.image_normalization" in df
    assert df.loc["v2_next_tick_stack3", "bc.n_stack"] == "3" and df.loc["v2", "bc.time_offsets_ms"] == "0"
    assert df.loc["v1.1", "exported_epoch"] == 11 and df.loc["v1.1", "val/acc"] == pytest.approx(0.51)
    assert df.loc["v2_multi_offset", "val/acc_offset/+100ms"] == pytest.approx(0.7)  # 4th offset of 4
    assert not {"rev", "typ", "parent", "test/acc", "policy/completion_rate"} & set(df.columns)
    text = format_table(df, short, width=120)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert all(any(line.startswith(name + " ") for line in text.splitlines()) for name in SEED_RUNS)
    assert " 11/26 " in text  # exported epoch / epochs run of v1.1
    csv = format_table(df, short, "csv").splitlines()
    assert csv[0].startswith("experiment,") and "bc.target" in csv[0] and "val/acc_offset/+100ms" in csv[0]
    assert len(csv) == 1 + len(SEED_RUNS)
    md = format_table(df, short, "md").splitlines()
    assert md[0].startswith("| experiment") and md[1].startswith("|:--") and len(md) == 2 + len(SEED_RUNS)


def test_table_shows_test_and_driving_metrics_when_present():
    drive = {g: {"completion_rate": 0.5, "progress": 0.8, "lap_time_ratio": 1.2} for g in ("policy", "expert")}
    base = read_params_file(ROOT / "params.yaml")
    show = fake_exp_show({"a": base, "b": apply_overrides(base, ["bc.lr=0.001"])}, {EVAL_METRICS: drive})
    b_metrics = show[1]["experiments"][1]["revs"][0]["data"]["metrics"][BC_METRICS]["data"]
    b_metrics["test"] = {"acc": 0.42, "loss": 1.3}  # the test split is scored once, on the exported model
    df, short = comparison_table(experiment_rows(show), ["a", "b"])
    assert list(df.columns[:1]) == ["bc.lr"] and short["bc.lr"] == "lr"
    assert df.loc["a", "policy/completion_rate"] == 0.5 and df.loc["b", "policy/lap_time_ratio"] == 1.2
    assert df.loc["b", "test/acc"] == 0.42 and math.isnan(df.loc["a", "test/acc"])
    text = format_table(df, short)
    assert "completion" in text and "test acc" in text and "lap time ratio" in text
    with pytest.raises(PresetError, match="no experiment or revision named c"):
        comparison_table(experiment_rows(show), ["a", "c"])


def test_stray_params_are_reported(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("bc:\n  lr: 0.1\n  epochs: 3\n", encoding="utf-8")
    git(tmp_path, "add", "params.yaml")
    git(tmp_path, "commit", "-qm", "p")
    (tmp_path / "params.yaml").write_text("bc:\n  lr: 0.2\n  epochs: 4\n", encoding="utf-8")
    os.chdir(tmp_path)
    assert stray_params(["bc.lr=0.3"]) == ["bc.epochs"]
    assert stray_params(["bc.lr=0.3", "bc.epochs=1"]) == []


def test_an_override_validate_refuses_never_reaches_params_yaml(tmp_path, monkeypatch, capsys):
    # `dvc exp run -S` writes its values into params.yaml before any stage runs, and checks out outputs (losing a
    # folder a path param names): tmpretrain checks the values first, and DVC is never started.
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "mynotes").mkdir()
    (tmp_path / "mynotes" / "notes.txt").write_text("keep me")
    (tmp_path / "presets.yaml").write_text("presets:\n  diverging:\n    set: [bc.lr=.inf]\n")
    monkeypatch.chdir(tmp_path)
    before = (tmp_path / "params.yaml").read_bytes()
    for args, message in [
        (
            ["exp", "run", "-S", "bc.lr=.nan"],
            "error: params.yaml: bc.lr: expected a finite number, got '.nan' (with -S bc.lr=.nan: nothing ran, "
            "params.yaml is unchanged)",
        ),
        (
            ["exp", "run", "-n", "x", "-S", "data.cache_dir=mynotes"],
            "error: params.yaml: data.cache_dir: 'mynotes' is a folder ingest did not write",
        ),
        (["exp", "run", "--queue", "-S", "bc.lrr=1"], "error: -S bc.lrr=1: Could not override 'bc.lrr'."),
        (["run", "diverging", "--allow-dirty"], "error: params.yaml: bc.lr: expected a finite number, got '.inf'"),
    ]:
        assert main(args) == 1, args
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
    assert (tmp_path / "params.yaml").read_bytes() == before
    assert (tmp_path / "mynotes" / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------ throwaway DVC project


@pytest.mark.slow
def test_two_experiments_writing_the_same_paths_both_survive(tmp_path):
    project = make_project(tmp_path / "proj")
    dvc(project, "exp", "run", "-n", "a", "-S", "bc.n_stack=1")
    enc_a = sha256(project / "models/bc/encoder.pt")
    curve_a = (project / "reports/bc/plots/metrics/val/loss.tsv").read_text()
    dvc(project, "exp", "run", "-n", "b", "-S", "bc.n_stack=3")
    enc_b = sha256(project / "models/bc/encoder.pt")
    assert enc_a != enc_b

    runs = exp_metrics(json.loads(dvc(project, "exp", "show", "--json")))
    assert {"a", "b"} <= set(runs)
    assert runs["a"]["params"]["bc"]["n_stack"] == 1 and runs["b"]["params"]["bc"]["n_stack"] == 3
    for name in ("a", "b"):
        m = runs[name]["metrics"]
        assert m["epochs_run"] == 2 and "loss" in m["val"] and "epoch" in m["best"]
    assert runs["a"]["metrics"] != runs["b"]["metrics"]

    for name, enc in (("a", enc_a), ("b", enc_b), ("a", enc_a)):
        dvc(project, "exp", "apply", name)
        assert sha256(project / "models/bc/encoder.pt") == enc, name
        meta = json.loads((project / "models/bc/pretrain_meta.json").read_text())
        assert meta["n_stack"] == (1 if name == "a" else 3)
        metrics = json.loads((project / "reports/bc/metrics.json").read_text())
        assert metrics == runs[name]["metrics"]
    assert (project / "reports/bc/plots/metrics/val/loss.tsv").read_text() == curve_a

    # the comparison shows the param that differs and the exported epoch's numbers
    table, _ = comparison_table(experiment_rows(exp_show(cwd=project)), ["a", "b"])
    assert list(table["bc.n_stack"]) == ["1", "3"]
    for name in ("a", "b"):
        assert table.loc[name, "val/acc"] == runs[name]["metrics"]["best"]["val/acc"]
        assert table.loc[name, "exported_epoch"] == runs[name]["metrics"]["best"]["epoch"]

    # the results page's snapshot takes the same experiments, with commits that git has
    from tmpretrain.experiments.results import collect

    snap = collect(experiment_rows(exp_show(["-A"], cwd=project)), {"presets": {"a": {}, "b": {}, "c": {}}})
    assert [e["name"] for e in snap["experiments"]] == ["a", "b"] and snap["missing"] == ["c"]
    for e in snap["experiments"]:
        assert e["metrics"][BC_METRICS] == runs[e["name"]]["metrics"]
        subprocess.run(["git", "cat-file", "-e", f"{e['rev']}^{{commit}}"], cwd=project, check=True)

    # the report reads both experiments and shows the numbers dvc exp show lists
    from tmpretrain.reports import load_runs

    os.chdir(project)
    loaded = {r.label: r for r in load_runs(["a", "b"], project)}
    for name in ("a", "b"):
        assert loaded[name].metrics == runs[name]["metrics"]
        assert loaded[name].curves["val/loss"].iloc[-1] == pytest.approx(runs[name]["metrics"]["val"]["loss"])


def test_drift_the_docs_commands_are_the_presets_commands():
    """Every `dvc exp run -n NAME ...` line in docs/experiments/ is what `tmpretrain show NAME` prints."""
    data = load_presets(PRESETS)
    lines = [
        line
        for page in sorted((ROOT / "docs/experiments").glob("*.md"))
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith("dvc exp run -n ")
    ]
    assert len(lines) >= 12
    for line in lines:
        assert line == quote(exp_run_command(data, line.split()[4])), line.split()[4]
