"""The `tmpretrain` console command: its subcommands, the `python -m` entry points that share them, `check` and
`export inspect`."""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import data_params, make_tree
from iqn_reference import IQNNetwork
from tmpretrain.cli import COMMANDS, describe_export, main
from tmpretrain.export import ENCODER_FILE
from tmpretrain.frame_store import build_frame_store
from tmpretrain.params import load_params
from tmpretrain.pretrain import run_bc

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "presets.yaml"


def test_console_script_and_help_list_every_subcommand(capsys):
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    entry = re.search(r'^\[project\.scripts\]\ntmpretrain = "([\w.]+):(\w+)"$', pyproject, re.M)
    assert entry and getattr(importlib.import_module(entry[1]), entry[2]) is main
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("run", "queue", "table", "plots", "report", "compare", "bench", "check", "export"):
        assert name in COMMANDS and f"    {name} " in out, name


def test_one_way_in_besides_the_stages():
    """`tmpretrain` is the only entry point outside the DVC stages: no `__main__` module or `__main__` guard elsewhere
    in the package, and what the old `python -m` mains did are subcommands."""
    package = ROOT / "src" / "tmpretrain"
    mains = sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if (p.name == "__main__.py" or 'if __name__ == "__main__"' in p.read_text(encoding="utf-8"))
        and p.parent.name != "stages"
    )
    # cli.py: `python -m tmpretrain.cli` is the console command; dvcplots.py rebuilds a vendored asset (maintainers)
    assert mains == ["cli.py", "reports/dvcplots.py"], mains


def test_benches_and_the_params_reference_are_subcommands(capsys):
    from tmpretrain.params import markdown_reference

    for which in (["eval"], ["rl"]):
        with pytest.raises(SystemExit) as exc:
            main(["bench", *which, "--help"])
        assert exc.value.code == 0 and f"usage: tmpretrain bench {which[0]}" in capsys.readouterr().out
    assert main(["check", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_reference()


def test_unknown_arguments_are_refused_where_nothing_passes_them_on(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--bogus"])
    assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_bench_gets_its_own_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "tmpretrain bench" in out and "--quick" in out


def test_faults_runs_the_checkouts_fault_table_with_its_own_arguments(capfd):
    assert main(["faults", "--help"]) == 0
    out = capfd.readouterr().out
    assert "usage: tmpretrain faults" in out and "--update" in out and "--sample" in out


def test_faults_from_an_installed_package_alone_is_one_line(tmp_path, monkeypatch, capsys):
    """The fault corpora are test support (tests/support): without the source checkout, one line saying so."""
    from tmpretrain import cli

    checkout = tmp_path / "clone"
    (checkout / cli.FAULTS).parent.mkdir(parents=True)
    (checkout / cli.FAULTS).touch()
    (checkout / "pyproject.toml").touch()
    (checkout / "docs").mkdir()
    assert cli.faults_checkout(checkout / "docs") == checkout  # found from anywhere inside a clone
    monkeypatch.setattr(cli, "faults_checkout", lambda start=None: None)
    assert main(["faults", "--update", "docs/reliability.md"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: `tmpretrain faults` needs the source checkout (it runs tests/support/faults.py, which an installed "
        "package does not have): run it in a clone of the repository\n"
    )


def test_compare_dry_run_lists_its_steps(capsys):
    assert main(["--presets", str(PRESETS), "compare", "normalisation", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "$ tmpretrain table v1.1 v1.2",
        "$ tmpretrain plots v1.1 v1.2 -o reports/compare/normalisation",
        "$ tmpretrain report v1.1 v1.2 -o reports/compare/normalisation.html",
    ]


def test_check_validates_params_without_running(tmp_path, capsys):
    good = tmp_path / "params.yaml"
    shutil.copy2(ROOT / "params.yaml", good)
    assert main(["check", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: valid")
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "params.yaml").read_text(encoding="utf-8").replace("  lr: 0.0005", "  lr: -1"))
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "bc.lr" in err


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    tree = make_tree(root / "replays", n_tracks=3, replays_per_track=2, n_frames=30, size=40)
    build_frame_store(data_params(root, tree, image_height=36, image_width=36), progress=False)
    return root / "cache"


@pytest.fixture(scope="module")
def exports(cache, tmp_path_factory) -> dict[bool, Path]:
    """Real pretrain_bc exports of tiny runs, by bc.use_actions_head (the A_head is exported only with it)."""
    out = {}
    for use_actions_head in (True, False):
        root = tmp_path_factory.mktemp(f"run_{use_actions_head}")
        bc = {"epochs": 2, "batch_size": 64, "encoder_init": "none", "use_actions_head": use_actions_head}
        bc |= {"time_offsets_ms": [-10, 0], "offset_weights": [0.5, 1.0], "trainer": {"accelerator": "cpu"}}
        (root / "params.yaml").write_text(yaml.safe_dump({"bc": bc}), encoding="utf-8")
        params = load_params(root / "params.yaml").bc
        run_bc(params, cache, root / "models/bc", root / "reports/bc", root / "models/vis")
        out[use_actions_head] = root / "models/bc"
    return out


@pytest.mark.parametrize("use_actions_head", [True, False])
def test_export_inspect_says_what_it_holds_and_its_snippet_loads(exports, use_actions_head, capsys):
    out = exports[use_actions_head]
    assert main(["export", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    meta = json.loads((out / "pretrain_meta.json").read_text())
    epoch, run = meta["selection"]["epoch"], meta["selection"]["epochs_run"]
    assert "Level 1 export, verified" in text and f"epoch      {epoch} (0-based) of {run} run" in text
    assert "offset     0 ms head (trained offsets [-10, 0]" in text
    assert ("no agent head exported" in text) is not use_actions_head
    # The printed snippet runs as is against the agent's network.
    snippet = text.split("How to load (checks sha256 and shapes again):\n", 1)[1].split("\nEverything", 1)[0]
    agent = IQNNetwork(36, 36, 128)
    before = agent.A_head[0].weight.detach().clone()
    exec(snippet.replace("\n    ", "\n").strip(), {"agent": agent})
    assert torch.equal(agent.img_head[0].weight, torch.load(out / ENCODER_FILE, weights_only=True)["0.weight"])
    assert torch.equal(agent.A_head[0].weight, before) is not use_actions_head


def test_export_inspect_of_a_broken_export_is_one_line(exports, tmp_path, capsys):
    out = shutil.copytree(exports[True], tmp_path / "bc")
    meta = json.loads((out / "pretrain_meta.json").read_text())
    meta["files"][ENCODER_FILE]["sha256"] = "0" * 64
    (out / "pretrain_meta.json").write_text(json.dumps(meta))
    assert main(["export", "inspect", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "encoder.pt: sha256" in err
    with pytest.raises(Exception, match="sha256"):
        describe_export(out)
