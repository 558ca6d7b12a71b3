"""Throwaway copies of this project as git + DVC repositories with tiny params, the environment their commands run
in, and `dvc exp show` output built by hand: what the DVC-level tests share."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tmpretrain.experiments import BC_METRICS
from tmpretrain.params import read_params_file
from tmpretrain.yamlio import dump_yaml

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ROOT / "presets.yaml"


PROJECT_FILES = ["src", "dvc.yaml", "params.yaml", "presets.yaml", ".dvcignore", "pyproject.toml", ".gitignore"]
TINY = {
    "synth": {
        "n_tracks": 3,
        "replays_per_track": 1,
        "seconds_per_replay": 6.0,
        "width": 64,
        "height": 64,
        "workers": 1,
    },
    "data": {"image_height": 36, "image_width": 36, "val_fraction": 0.34, "workers": 1},
    "vis": {"epochs": 1, "batch_size": 64},
    "bc": {"epochs": 2, "batch_size": 64},
    # every arm, one seed, 20 env steps on one track: the stage's path, not a study
    "rl": {
        "seeds": [0],
        "env_steps": 20,
        "eval_every": 20,
        "train_tracks": 1,
        "eval_tracks": 1,
        "workers": 1,
        "demo_steps": 20,
        "demo_pretrain_updates": 1,
        "batch_size": 8,
        "learning_starts": 10,
    },
}


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    subprocess.run(["git", *args], cwd=cwd, check=True, env=env)


def project_env(site_cache: Path) -> dict:
    """The subprocess environment: no DVC_* from the outside (a running `dvc exp` sets some), the venv first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC")}
    env.update(
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(site_cache),
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    return env


def make_project(dest: Path, tiny: dict = TINY) -> Path:
    """A copy of this project with tiny params, as a fresh git + DVC repository with one commit."""
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    params = read_params_file(dest / "params.yaml")
    for group, values in tiny.items():
        params[group].update(values)
    (dest / "params.yaml").write_text(dump_yaml(params), encoding="utf-8")
    env = project_env(dest.parent / "dvc-site")
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, env=env)
    subprocess.run(["dvc", "init", "-q"], cwd=dest, check=True, env=env)
    if (ROOT / ".dvc" / "config").is_file():
        shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    if (ROOT / ".dvc" / "plots").is_dir():
        shutil.copytree(ROOT / ".dvc" / "plots", dest / ".dvc" / "plots")
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "baseline"], cwd=dest, check=True, env=env)
    return dest


def dvc(project: Path, *args: str) -> str:
    proc = subprocess.run(
        ["dvc", *args], cwd=project, env=project_env(project.parent / "dvc-site"), capture_output=True, text=True
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def exp_metrics(show: list) -> dict[str, dict]:
    """{experiment name: reports/bc/metrics.json} from `dvc exp show --json`."""
    out = {}
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                metrics = (data.get("metrics") or {}).get("reports/bc/metrics.json", {}).get("data")
                params = (data.get("params") or {}).get("params.yaml", {}).get("data")
                out[rev.get("name") or exp.get("name")] = {"metrics": metrics, "params": params}
    return out


def bc_metrics(k: int, offsets: list[int]) -> dict:
    """reports/bc/metrics.json as pretrain_bc writes it (the keys the table reads)."""
    labels = ["0ms" if d == 0 else f"{d:+d}ms" for d in offsets]
    best = {"epoch": 10 + k, "metric": "val/loss", "mode": "min", "value": 1.0 + k / 100, "val/loss": 1.0 + k / 100}
    best |= {"val/acc": 0.5 + k / 100, "val/main_actions_acc": 0.3 + k / 100}
    best |= {f"val/acc_offset/{lab}": 0.4 + j / 10 for j, lab in enumerate(labels)}
    return {"val": {"loss": 2.0, "acc": 0.1}, "best": best, "epochs_run": 25 + k}


def fake_exp_show(named: dict[str, dict], extra_metrics: dict | None = None) -> list:
    """`dvc exp show --json` of a workspace, its commit and one experiment per entry of `named` (name: params)."""

    def entry(rev, name, params, k):
        offsets = params["bc"]["time_offsets_ms"]
        metrics = {"reports/vis/metrics.json": {"data": {"val": {"loss": 0.03}}}}
        metrics[BC_METRICS] = {"data": bc_metrics(k, offsets)}
        for path, data in (extra_metrics or {}).items():
            metrics[path] = {"data": data}
        return {"rev": rev, "name": name, "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}

    base = read_params_file(ROOT / "params.yaml")
    exps = [{"name": n, "revs": [entry(f"{k:040x}", n, p, k)]} for k, (n, p) in enumerate(named.items())]
    head = entry("f" * 40, "main", base, 99) | {"experiments": exps}
    workspace = entry("workspace", None, base, 99) | {"experiments": None}
    return [workspace, head]
