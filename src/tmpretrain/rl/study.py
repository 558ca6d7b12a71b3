"""The downstream-RL study behind the `rl` stage: every (arm, seed) run, resumable, then the outputs.

One run trains one arm from one seed on the training tracks (synthesize's stream: the tracks the replays were
driven on) and evaluates its greedy policy on held-out tracks with the `evaluate` protocol at step 0, every
`rl.eval_every` env steps and at the end. Runs go to `rl.workers` processes (spawned: one torch thread each); a run
depends on its arm, seed and params only, so the bytes do not depend on the worker count. Each finished run is
saved under CHECKPOINT_ROOT/rl/<fingerprint>/ (outside DVC's outputs, which DVC deletes before a rerun): a killed
stage continues from its finished runs when run again with the same params, code inputs and exports.

Outputs: models/rl/<arm>_seed<k>.pt (the online network's state_dict, the agent's keys), reports/rl/metrics.json
(summary.py), reports/rl/curves.json (every evaluation of every run), reports/rl/learning_curves.svg (figure.py),
reports/rl/live/<arm>_seed<k>/ (DVCLive curves by env step).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ExportError
from ..evaluate import EvalSetup, group_metrics
from ..files import write_json
from ..params import Params, as_dict
from ..pretrain import CHECKPOINT_ROOT
from ..stats import format_interval
from .arms import ARMS, EXPORT_DIRS
from .demos import collect_demonstrations
from .figure import learning_curves_svg
from .greedy import GreedyEvaluation, expert_lap_times
from .learner import RLConfig
from .loop import LoopConfig, train
from .network import IQNNetwork, init_from_export
from .summary import summarize

MODEL_DIR, OUT_DIR = Path("models/rl"), Path("reports/rl")
METRICS_FILE, CURVES_FILE, LIVE_DIR, FIGURE_FILE = "metrics.json", "curves.json", "live", "learning_curves.svg"
CURVE_METRICS = ("completion_rate", "clean_completion_rate", "progress", "lap_time_ratio")


@dataclass(frozen=True)
class Run:
    """Everything one (arm, seed) run needs, picklable for a worker process."""

    arm: str
    seed: int
    rl: RLConfig
    loop: LoopConfig
    demo_steps: int
    setup: EvalSetup  # held-out tracks and the protocol
    expert_laps: dict[int, float]
    checkpoint: Path

    @property
    def name(self) -> str:
        return f"{self.arm}_seed{self.seed}"


def plan(params: Params, setup: EvalSetup, checkpoint_dir: Path) -> tuple[list[Run], dict[str, str]]:
    """The study's runs, arm-major (the order of their outputs), with the setup resolved from params; and the arms
    skipped, with why (an export that cannot seed the agent's network)."""
    rl = params.rl
    env_kwargs = dict(
        training_seed=params.synth.seed,
        render_height=params.synth.height,
        render_width=params.synth.width,
        image_height=params.data.image_height,
        image_width=params.data.image_width,
        decision_interval_ms=setup.decision_interval_ms,
        frame_interval_ms=setup.frame_interval_ms,
        time_limit_s=setup.time_limit_s,
        offroad_limit_s=setup.offroad_limit_s,
        stuck_limit_s=setup.stuck_limit_s,
    )
    unusable = unusable_exports(params)
    skipped = {arm: unusable[ARMS[arm].init] for arm in rl.arms if ARMS[arm].init in unusable}
    expert_laps = expert_lap_times(setup)
    runs = []
    for arm in (a for a in rl.arms if a not in skipped):
        init = ARMS[arm].init
        loop = LoopConfig(
            total_steps=rl.env_steps,
            tracks=tuple(range(rl.train_tracks)),
            init=init,
            init_dir=str(EXPORT_DIRS[init]) if init in EXPORT_DIRS else None,
            env_kwargs=env_kwargs,
            eval_every=rl.eval_every,
            demo_pretrain_updates=rl.demo_pretrain_updates if ARMS[arm].demonstrations else 0,
        )
        for seed in rl.seeds:
            config = RLConfig.from_params(rl, seed)
            checkpoint = checkpoint_dir / f"{arm}_seed{seed}.pt"
            runs.append(Run(arm, seed, config, loop, rl.demo_steps, setup, expert_laps, checkpoint))
    return runs, skipped


def unusable_exports(params: Params) -> dict[str, str]:
    """{init: why} for each export the arms would load that does not fit the agent's network (a stacked or
    Linear-head BC run, say): its arms are skipped with the reason, as evaluate skips a policy it cannot rebuild,
    and the other arms still run. Checked before any run starts."""
    image_hw = (params.data.image_height, params.data.image_width)
    unusable = {}
    for init in sorted({ARMS[arm].init for arm in params.rl.arms} & set(EXPORT_DIRS)):
        try:
            init_from_export(IQNNetwork(image_hw), init, EXPORT_DIRS[init])
        except ExportError as exc:
            unusable[init] = str(exc)
    return unusable


def fingerprint(params: Params, setup: EvalSetup) -> str:
    """What a finished run depends on: the params it reads, the evaluation setup and the exports' metadata (which
    holds their files' hashes). A checkpoint from any other combination is never reused; rl.workers is speed only."""
    inputs = {
        "rl": {k: v for k, v in as_dict(params.rl).items() if k != "workers"},
        "synth": [params.synth.seed, params.synth.height, params.synth.width],
        "data": [params.data.image_height, params.data.image_width],
        "setup": dataclasses.asdict(setup),
        "exports": {str(d): _read_or_none(d / "pretrain_meta.json") for d in EXPORT_DIRS.values()},
        "code": _source_hash(),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _source_hash() -> str:
    """The modules a run executes (the learner, the simulator, the evaluation protocol): changed code, new runs."""
    package = Path(__file__).resolve().parents[1]
    files = sorted([*package.glob("rl/*.py"), *package.glob("synthetic/*.py")])
    files += [package / f"{name}.py" for name in ("evaluate", "stats", "models", "export", "params")]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _read_or_none(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


# ------------------------------------------------------------------------------------------------ one run


def execute(run: Run) -> dict:
    """Train one run (or load it, finished, from its checkpoint); returns its record."""
    if run.checkpoint.is_file():
        return torch.load(run.checkpoint, weights_only=False)["record"]
    start = time.perf_counter()
    demos = None
    if ARMS[run.arm].demonstrations:
        demos = collect_demonstrations(run.rl, run.demo_steps, run.loop.tracks, run.loop.env_kwargs)
    observation = {k: run.loop.env_kwargs[k] for k in ("image_height", "image_width")}
    evaluation = GreedyEvaluation(run.setup, observation, run.expert_laps)
    evaluations: list[dict] = []

    def on_eval(learner, step: int) -> None:
        rows = evaluation(learner)
        evaluations.append({"step": step, "tracks": rows})
        m = group_metrics(rows, run.setup.seed)
        print(
            f"rl: {run.arm} seed {run.seed}: step {step}/{run.loop.total_steps}  clean {m['clean_completion_rate']:.2f}"
            f"  completion {m['completion_rate']:.2f}  progress {m['progress']:.2f}  updates {learner.updates}"
            f"  ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    learner, _ = train(run.rl, run.loop, demos, on_eval)
    evaluation.close()
    record = {"arm": run.arm, "seed": run.seed, "updates": learner.updates, "evaluations": evaluations}
    run.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    partial = run.checkpoint.with_suffix(".partial")
    torch.save({"record": record, "weights": learner.online.state_dict()}, partial)
    partial.replace(run.checkpoint)  # a killed run leaves no checkpoint that looks finished
    return record


def _execute_in_worker(run: Run) -> dict:
    torch.set_num_threads(1)
    return execute(run)


def execute_all(runs: list[Run], workers: int) -> list[dict]:
    """Every run's record, in `runs`' order; finished runs load from their checkpoints."""
    todo = [run for run in runs if not run.checkpoint.is_file()]
    if len(todo) < len(runs):
        print(f"rl: resuming: {len(runs) - len(todo)} of {len(runs)} runs finished earlier", flush=True)
    if workers > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch or renderer state
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
            list(pool.map(_execute_in_worker, todo))
    return [execute(run) for run in runs]


# ------------------------------------------------------------------------------------------------ outputs


def write_outputs(
    runs: list[Run], records: list[dict], budget: int, out_dir: Path, model_dir: Path, skipped: dict[str, str]
) -> dict:
    """models/rl/*.pt, reports/rl/{metrics.json, curves.json, live/}; returns the metrics."""
    from dvclive import Live  # only the outputs need it

    for path in (model_dir, out_dir / LIVE_DIR):
        shutil.rmtree(path, ignore_errors=True)  # a run of other arms or seeds must leave nothing stale
    model_dir.mkdir(parents=True, exist_ok=True)
    curves = []
    for run, record in zip(runs, records, strict=True):
        weights = torch.load(run.checkpoint, weights_only=False)["weights"]
        torch.save(weights, model_dir / f"{run.name}.pt")
        live = Live(str(out_dir / LIVE_DIR / run.name), dvcyaml=False, save_dvc_exp=False, report=None)
        for evaluation in record["evaluations"]:
            m = group_metrics(evaluation["tracks"], run.setup.seed)
            curves.append({"arm": run.arm, "seed": run.seed, "step": evaluation["step"], **m})
            live.step = evaluation["step"]
            for name in CURVE_METRICS:
                if m[name] is not None:
                    live.log_metric(f"eval/{name}", m[name])
            live.make_summary()
        live.end()
    by_arm: dict[str, list[dict]] = {}
    for run, record in zip(runs, records, strict=True):
        by_arm.setdefault(run.arm, []).append(record)
    metrics = {
        "budget_env_steps": budget,
        "seeds": sorted({run.seed for run in runs}),
        "eval_tracks": len(runs[0].setup.tracks) if runs else 0,
        **summarize(by_arm, budget),
        "skipped": skipped,
    }
    write_json(out_dir / METRICS_FILE, metrics)
    write_json(out_dir / CURVES_FILE, curves)
    (out_dir / FIGURE_FILE).write_text(learning_curves_svg(curves), encoding="utf-8")
    return metrics


def run_study(params: Params, setup: EvalSetup, checkpoint_root: Path = CHECKPOINT_ROOT / "rl") -> dict:
    """The whole stage after params and setup: runs (resumed where finished), outputs; returns the metrics."""
    checkpoint_dir = checkpoint_root / fingerprint(params, setup)
    if checkpoint_root.is_dir():  # checkpoints of other params or exports can never be used again
        for stale in checkpoint_root.iterdir():
            if stale != checkpoint_dir:
                shutil.rmtree(stale, ignore_errors=True)
    runs, skipped = plan(params, setup, checkpoint_dir)
    records = execute_all(runs, params.rl.workers)
    return write_outputs(runs, records, params.rl.env_steps, OUT_DIR, MODEL_DIR, skipped)


def _figure(section: dict, name: str, spec: str = ".2f") -> str:
    return format_interval(section[name], section[f"{name}_low"], section[f"{name}_high"], spec)


def summary_lines(metrics: dict) -> list[str]:
    """One line per arm: progress and clean completion at the start and the end, their areas under the curves,
    and each area's difference to scratch."""
    lines = []
    for arm, m in metrics["arms"].items():
        line = (
            f"  {arm:<8} progress {_figure(m['start'], 'progress')} -> {_figure(m['end'], 'progress')}, AUC "
            f"{_figure(m, 'auc_progress')}; clean {_figure(m['start'], 'clean_completion_rate')} -> "
            f"{_figure(m['end'], 'clean_completion_rate')}, AUC {_figure(m, 'auc_clean_completion')}"
        )
        if arm in metrics["vs_scratch"]:
            line += f"; AUC - scratch: progress {_figure(metrics['vs_scratch'][arm], 'auc_progress', '+.2f')}"
        lines.append(line)
    lines += [f"  {arm:<8} skipped: {why}" for arm, why in metrics.get("skipped", {}).items()]
    return lines


def markdown_table(metrics: dict) -> list[str]:
    """reports/rl/metrics.json as docs/rl.md's per-arm table (tests keep the page equal to it)."""
    budget, n_seeds = metrics["budget_env_steps"], len(metrics["seeds"])
    lines = [
        "| arm | progress, step 0 | progress, end | AUC progress | clean completion, end | steps to 0.5 clean "
        "| AUC progress - scratch | AUC progress - bc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, m in metrics["arms"].items():
        censored = m["steps_to_clean_0.5_censored"]
        steps = f"{m['steps_to_clean_0.5']:.0f}" + (
            f" ({censored} of {n_seeds} censored at {budget})" if censored else ""
        )
        versus = [
            _figure(metrics[group][arm], "auc_progress", "+.3f") if arm in metrics[group] else "-"
            for group in ("vs_scratch", "vs_bc")
        ]
        cells = [
            _figure(m["start"], "progress"),
            _figure(m["end"], "progress"),
            _figure(m, "auc_progress"),
            _figure(m["end"], "clean_completion_rate"),
            steps,
            *versus,
        ]
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    return lines + [f"| `{arm}` | skipped: {why} |" for arm, why in metrics.get("skipped", {}).items()]
