"""The figures the README quotes are the ones the committed run wrote (reports/*/metrics.json beside dvc.lock) and
the split the shipped params make: a rerun that changes a number fails here until the page says the new one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tmpretrain.frame_store import split_tracks
from tmpretrain.params import load_params
from tmpretrain.stats import format_interval
from tmpretrain.synthetic import track_id

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _metrics(stage: str) -> dict:
    return json.loads((ROOT / "reports" / stage / "metrics.json").read_text(encoding="utf-8"))


def _row(label: str) -> list[str]:
    """The cells of the README table row that starts with `label` (bold marks removed)."""
    for line in README.splitlines():
        if line.startswith(f"| {label}"):
            return [cell.strip().strip("*") for cell in line.strip("|").split("|")][1:]
    raise AssertionError(f"README has no table row starting with {label!r}")


def test_split_sizes_are_what_the_shipped_params_make():
    params = load_params(ROOT / "params.yaml")
    tracks = [track_id(i) for i in range(params.synth.n_tracks)]
    roles = list(
        split_tracks(tracks, params.data.val_fraction, params.data.split_seed, params.data.test_fraction).values()
    )
    n = {role: roles.count(role) for role in ("train", "val", "test")}
    frames = params.synth.replays_per_track * round(params.synth.seconds_per_replay * params.synth.fps)
    sentence = (
        f"{params.synth.n_tracks} generated tracks, {params.synth.n_tracks * params.synth.replays_per_track} replays, "
        f"{params.synth.n_tracks * frames:,} frames, split by track into {n['train']} train, {n['val']} val and "
        f"{n['test']} test\ntracks ({n['val'] * frames:,} frames each for val and test)"
    )
    assert sentence in README


@pytest.mark.parametrize("split", ["val", "test"])
def test_per_offset_accuracy_table(split):
    bc = _metrics("bc")
    source = bc["best"] if split == "val" else {f"test/{k}": v for k, v in _flat(bc["test"]).items()}
    offsets = ["-10ms", "0ms", "+10ms", "+100ms"]
    want = [f"{source[f'{split}/acc_offset/{o}']:.3f}" for o in offsets]
    assert _row(f"{split} accuracy") == want


def test_selected_epoch_and_baseline():
    bc = _metrics("bc")
    best = bc["best"]
    assert f"({best['epoch']} of {bc['epochs_run']}, lowest `val/loss` {best['val/loss']:.3f})" in README
    assert f"against {bc['val']['majority_baseline_acc']:.3f} for always predicting" in README


@pytest.mark.parametrize(
    "label,group",
    [
        ("**exported policy, sampled**", "policy"),
        ("**exported policy, greedy**", "policy_greedy"),
        ("scripted expert", "expert"),
        ("always accelerate", "always_accel"),
        ("uniformly random", "random"),
    ],
)
def test_driving_table_gives_every_figure_with_its_interval(label, group):
    m = _metrics("eval")[group]
    columns = [
        ("completion_rate", ".2f"),
        ("clean_completion_rate", ".2f"),
        ("progress", ".2f"),
        ("lap_time_ratio", ".2f"),
        ("offroad_fraction", ".2f"),
        ("mean_speed", ".1f"),
    ]
    want = [format_interval(m[k], m[f"{k}_low"], m[f"{k}_high"], spec) for k, spec in columns]
    assert _row(label) == want
    assert all(cell == "-" or "[" in cell for cell in want)


def _flat(node: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        out.update(_flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_the_readme_names_every_stage_of_the_pipeline():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    table = README[README.index("## The pipeline") :]
    for name in stages:
        assert re.search(rf"^\| `{name}` \|", table, re.M), name
