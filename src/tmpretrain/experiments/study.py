"""The verdicts study: every preset of the original study's conclusions at several training seeds, resumable.

    tmpretrain study [PRESETS|FAMILIES|all] [--seeds 4] [--target STAGE] [--dry-run]

Seed s of preset P is the experiment `P` (s = 0) or `P_seed<s>`: P's overrides with `bc.seed=s` and `vis.seed=s`,
so Level 0 is re-seeded with Level 1 and two presets that share a Level 0 recipe share its model at each seed (DVC's
run cache trains it once). The command queues only what has neither finished with those seeds nor is queued or
running, then starts one queue worker: run it again after an interruption, in a later sitting, or with more seeds,
and it carries on from where the study stopped. `tmpretrain results` gathers whatever has finished
(docs/experiments/results.md); commit its results.json as runs land. `--target evaluate` runs each experiment's
pipeline up to `evaluate` only (what the verdicts are computed from), leaving out the downstream `rl` stage (a
third of a run at the default budget); such a run has no downstream-RL column.
"""

from __future__ import annotations

import json
import re

from ..yamlio import dvc_stages
from . import (
    PresetError,
    check_overrides,
    exp_show,
    experiment_rows,
    override_key,
    quote,
    resolve,
    run_command,
    select,
)

STUDY_SEEDS = 4  # the fewest training seeds a side a verdict may rest on (docs/experiments/results.md)
SEED_KEYS = ("bc.seed", "vis.seed")
UNFINISHED = ("queued", "running")


REPEAT_NAME = re.compile(r"(?P<preset>.+)_seed(?P<seed>[0-9]+)")


def repeat_name(preset: str, seed: int) -> str:
    """Seed 0 is the preset's own experiment; seed s > 0 is `<preset>_seed<s>` (REPEAT_NAME reads it back)."""
    return preset if seed == 0 else f"{preset}_seed{seed}"


def study_overrides(data: dict, targets: list[str], seeds: int) -> list[tuple[str, list[str]]]:
    """(experiment name, overrides) of every run the study needs, preset by preset, seed by seed."""
    if seeds < 1:
        raise PresetError(f"--seeds must be at least 1, got {seeds}")
    runs = []
    for preset in select(data, targets):
        base = [o for o in resolve(data, preset) if override_key(o) not in SEED_KEYS]
        runs += [(repeat_name(preset, s), base + [f"{k}={s}" for k in SEED_KEYS]) for s in range(seeds)]
    return runs


def pending(runs: list[tuple[str, list[str], dict]], rows: list[dict]) -> list[tuple[str, list[str], dict]]:
    """The runs (name, overrides, the params they give) with no experiment of their name that is queued or
    running, or that finished with exactly those params (`experiment_rows` of `dvc exp show -A`). A finished
    experiment of the name with other params (an older protocol, other defaults) does not count: the run is queued
    again, and the newest of a name is what `tmpretrain results` reads."""
    busy = {r["name"] for r in rows if r["state"] in UNFINISHED}
    done = {(r["name"], json.dumps(r["params"], sort_keys=True)) for r in rows if r["state"] == "success"}
    return [run for run in runs if run[0] not in busy and (run[0], json.dumps(run[2], sort_keys=True)) not in done]


def queue_study(
    targets: list[str], data: dict, seeds: int = STUDY_SEEDS, dry_run: bool = False, stage: str | None = None
) -> int:
    """Queue the study's missing runs and start one worker; the first failing command's exit status. `stage`: run
    each experiment's pipeline up to that stage only (`dvc exp run`'s target)."""
    # every refusal before anything is queued; the params each run gives tell a finished run of today's recipe
    if stage is not None:
        stages = dvc_stages()
        if stage not in stages:
            raise PresetError(f"--target {stage!r} is not a stage of dvc.yaml (stages: {', '.join(stages)})")
    runs = [(name, overrides, check_overrides(overrides)) for name, overrides in study_overrides(data, targets, seeds)]
    rows = [] if dry_run else experiment_rows(exp_show(["-A"]))
    todo = pending(runs, rows)
    print(f"study: {len(runs)} runs ({seeds} seeds), {len(runs) - len(todo)} finished or queued, {len(todo)} to queue")
    for name, overrides, _ in todo:
        cmd = ["dvc", "exp", "run", "--queue", "-n", name]
        for ov in overrides:
            cmd += ["-S", ov]
        rc = run_command(cmd + ([stage] if stage else []), dry_run)
        if rc:
            return rc
    if todo or any(r["state"] == "queued" for r in rows):  # a worker for what an earlier sitting left queued too
        start = ["dvc", "queue", "start", "-j", "1"]  # one at a time: a run uses every core
        rc = run_command(start, dry_run)
        if rc:
            return rc
        print(f"watch: dvc queue status; gather: tmpretrain results; after a restart: {quote(start)}")
    return 0
