"""Closed-loop evaluation: drive the exported policy, the scripted expert and two baselines on held-out tracks.

Five groups drive the same tracks (a standing start, one lap per episode):

- policy: the exported encoder.pt + action head, loaded the way the agent loads them (from the export directory
  alone), seeing the frames the environment renders and preprocesses like ingest, each decision drawn from its
  softmax; `eval.rollouts_per_track` episodes per track, each with its own sampling seed;
- policy_greedy: the same export taking its most likely action (what the agent does right after transfer: it acts
  by argmax); one episode per track, as it is deterministic;
- expert: the scripted driver that made the data, driving every 10 ms as it did there (needs the synthetic env);
- random: a uniformly random action per decision;
- always_accel: action 0 ("accel") throughout.

Every group's episodes run together: one environment per episode, stepped in lockstep, and one batched policy
forward per decision for all live episodes. Everything random is seeded from `eval.seed`, the track seed and the
rollout index, so a rerun writes the same bytes. Outputs: metrics.json (per group: completion_rate,
clean_completion_rate, progress, lap_time_ratio, offroad_fraction, mean_speed, each with its 95 % interval as
`<name>_low` / `<name>_high`: stats.py), tracks.json (one row per episode), action_mix.json (the policy's decisions
against the expert's) and media/ (rollout video, path data for the maps).

    tmpretrain bench eval [--model-dir models/bc]   # decisions/s for 1 and 32 envs on this machine
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import tmpretrain  # noqa: F401  (registers tmpretrain/SynthTrack-v0)

from .actions import ACTION_NAMES, N_ACTIONS
from .errors import ExportError, ParamsError
from .eval_media import write_media
from .export import (
    ACTIONS_HEAD_FILE,
    ENCODER_FILE,
    FLOAT_FEATURES_FILE,
    LINEAR_HEAD_FILE,
    STACK_FUSION_FILE,
    load_export,
)
from .files import write_json
from .models import BCModel, normalize
from .stats import clustered_rate, format_interval, hierarchical_bootstrap, nanmean_or_nan
from .synthetic.env import CLEAN_OFFROAD_FRACTION, ENTRY_POINT

GROUPS = ("policy", "policy_greedy", "expert", "random", "always_accel")
POLICY_GROUPS = {"policy": "sample", "policy_greedy": "greedy"}
ALWAYS_ACCEL = ACTION_NAMES.index("accel")
METRICS_FILE, TRACKS_FILE, ACTION_MIX_FILE, MEDIA_DIR = "metrics.json", "tracks.json", "action_mix.json", "media"
_RESET_STREAM, _RANDOM_STREAM, _SAMPLE_STREAM, _BOOTSTRAP_STREAM = 0, 1, 2, 3


class PolicyUnavailable(ExportError):
    """The export lacks a part the policy needs (a Level 0 export, or a head or stack fusion file missing)."""


# ----------------------------------------------------------------------------------------------- policies


class ExportedPolicy:
    """The exported policy, rebuilt from the export directory alone (files verified by `load_export`)."""

    def __init__(self, model_dir: Path, action_selection: str = "greedy", seed: int = 0):
        model_dir = Path(model_dir)
        meta, states = load_export(model_dir)
        if meta.get("level") != 1:
            raise ExportError(f"{model_dir}: not a behavioral-cloning export (level {meta.get('level')}), no policy")
        self.meta = meta
        self.image_hw = tuple(int(v) for v in meta["image_size"])
        self.n_stack = int(meta.get("n_stack", 1))
        self.use_floats = bool(meta.get("use_floats", False))
        self.normalization = meta["image_normalization"]
        self.action_selection, self.seed = action_selection, seed
        use_actions_head = ACTIONS_HEAD_FILE in states
        needed = [ENCODER_FILE, ACTIONS_HEAD_FILE if use_actions_head else LINEAR_HEAD_FILE]
        needed += [STACK_FUSION_FILE] if self.n_stack > 1 else []
        needed += [FLOAT_FEATURES_FILE] if self.use_floats else []
        missing = [name for name in needed if name not in states]
        if missing:
            raise PolicyUnavailable(
                f"{model_dir}: the export has no {', '.join(missing)}, so its policy cannot be rebuilt "
                f"(head layout {meta.get('head_layout')!r}, n_stack {self.n_stack}, use_floats {self.use_floats})"
            )
        hidden = int(meta.get("params", {}).get("dense_hidden_dimension", 1024))
        model = BCModel(
            image_hw=self.image_hw,
            n_stack=self.n_stack,
            n_offsets=1,
            use_actions_head=use_actions_head,
            dense_hidden_dimension=hidden,
            dropout=0.0,
            action_head_dropout=0.0,
            use_floats=self.use_floats,
        )
        parts = [(model.encoder, ENCODER_FILE), (model.heads[0], needed[1])]
        parts += [(model.stack_fusion, STACK_FUSION_FILE)] if self.n_stack > 1 else []
        parts += [(model.float_feature_extractor, FLOAT_FEATURES_FILE)] if self.use_floats else []
        for module, name in parts:
            try:
                module.load_state_dict(states[name], strict=True)
            except RuntimeError as exc:
                raise ExportError(f"{model_dir / name}: does not load into the policy ({exc})") from None
        self.model = model.eval()

    @torch.inference_mode()
    def logits(self, observations: list) -> torch.Tensor:
        """(B, 12) logits for a batch of observations: uint8 (n_stack, H, W) or {"frames", "floats"}."""
        frames = [o["frames"] if isinstance(o, dict) else o for o in observations]
        x = normalize(torch.from_numpy(np.stack(frames)), self.normalization)
        floats = None
        if self.use_floats:
            floats = torch.from_numpy(np.stack([o["floats"] for o in observations]).astype(np.float32))
        return self.model(x, floats)[:, 0].float()

    def act(self, observations: list, episodes: list[Episode]) -> list[int]:
        logits = self.logits(observations)
        if self.action_selection == "greedy":
            return logits.argmax(dim=1).tolist()
        probs = torch.softmax(logits.double(), dim=1).numpy()
        return [
            int(ep.rng(_SAMPLE_STREAM, self.seed).choice(N_ACTIONS, p=p / p.sum()))
            for ep, p in zip(episodes, probs, strict=True)
        ]


class RandomPolicy:
    def __init__(self, seed: int):
        self.seed = seed

    def act(self, observations: list, episodes: list[Episode]) -> list[int]:
        return [int(ep.rng(_RANDOM_STREAM, self.seed).integers(N_ACTIONS)) for ep in episodes]


class ConstantPolicy:
    """One action throughout (always accelerate; also the ignored input of an autopilot episode)."""

    def __init__(self, action: int):
        self.action = action

    def act(self, observations: list, episodes: list[Episode]) -> list[int]:
        return [self.action] * len(episodes)


# ----------------------------------------------------------------------------------------------- rollouts


@dataclass
class Episode:
    """One episode's record, one entry per decision (the reset state first for positions)."""

    track: int
    rollout: int = 0
    actions: list[int] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    on_road: list[bool] = field(default_factory=list)
    speed: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # the newest observed frame per decision (video)
    final: dict = field(default_factory=dict)
    _rngs: dict = field(default_factory=dict, repr=False)

    def rng(self, stream: int, seed: int) -> np.random.Generator:
        """This episode's generator for one purpose (random actions, sampling), seeded by (seed, track, rollout,
        stream)."""
        if stream not in self._rngs:
            self._rngs[stream] = np.random.default_rng([seed, self.track, self.rollout, stream])
        return self._rngs[stream]

    def record(self, info: dict) -> None:
        """The state after a decision (or the reset); x, y where the env reports a position."""
        if "x" in info and "y" in info:
            self.x.append(round(float(info["x"]), 2))
            self.y.append(round(float(info["y"]), 2))
        self.on_road.append(bool(info.get("on_road", True)))
        self.speed.append(float(info["speed"]))


def reset_seed(seed: int, track: int) -> int:
    """The env's reset seed for one track (the expert's style and mistakes derive from it)."""
    return int(np.random.SeedSequence([seed, track, _RESET_STREAM]).generate_state(1)[0])


def rollout(envs: list[gym.Env], runs: list[tuple[int, int]], policy, seed: int, keep_frames: int = 0) -> list[Episode]:
    """Run one episode per env, all together: each decision, one policy call for every live episode. `runs`: the
    (track, rollout index) of each env.

    `keep_frames`: the first this many episodes keep their newest observed frame per decision (for the video)."""
    episodes = [Episode(track, index) for track, index in runs]
    observations = []
    for env, ep in zip(envs, episodes, strict=True):
        obs, info = env.reset(seed=reset_seed(seed, ep.track))
        observations.append(obs)
        ep.record(info)
    live = list(range(len(envs)))
    while live:
        actions = policy.act([observations[i] for i in live], [episodes[i] for i in live])
        still = []
        for i, action in zip(live, actions, strict=True):
            ep = episodes[i]
            if i < keep_frames:
                ep.frames.append(_newest_frame(observations[i]))
            observations[i], _, terminated, truncated, info = envs[i].step(action)
            applied = int(info.get("action", -1))  # what the car did: the expert's under autopilot
            ep.actions.append(applied if applied >= 0 else int(action))
            ep.record(info)
            if terminated or truncated:
                ep.final = dict(info, terminated=bool(terminated))
            else:
                still.append(i)
        live = still
    return episodes


def _newest_frame(obs) -> np.ndarray:
    frames = obs["frames"] if isinstance(obs, dict) else obs
    return np.asarray(frames[-1], dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ metrics


def _r(x: float | None, digits: int = 4) -> float | None:
    """Rounded for JSON; None for a missing or undefined (NaN) value."""
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def track_rows(group: str, episodes: list[Episode], expert_laps: dict[int, float]) -> list[dict]:
    """One row per episode. A lap is clean when at most CLEAN_OFFROAD_FRACTION of its time was off the road."""
    rows = []
    for ep in episodes:
        info = ep.final
        finished = bool(info.get("terminated")) and info.get("lap_time_s", 0.0) > 0.0
        lap = info["lap_time_s"] if finished else None
        time_s = float(info["time_s"])
        offroad = info["offroad_s"] / time_s if time_s > 0 else 0.0
        ratio = lap / expert_laps[ep.track] if finished and expert_laps.get(ep.track) else None
        rows.append(
            {
                "group": group,
                "track": ep.track,
                "rollout": ep.rollout,
                "finished": finished,
                "clean": finished and offroad <= CLEAN_OFFROAD_FRACTION,
                "progress": _r(info["progress"]),
                "lap_time_s": _r(lap, 2),
                "lap_time_ratio": _r(ratio),
                "offroad_fraction": _r(offroad),
                "mean_speed": _r(np.mean(ep.speed[1:]) if len(ep.speed) > 1 else 0.0, 3),
                "time_s": _r(time_s, 2),
                "gates_passed": int(info.get("gates_passed", 0)),
                "end": info.get("end", ""),
                "decisions": len(ep.actions),
            }
        )
    return rows


RATES = ("completion_rate", "clean_completion_rate")
MEANS = ("progress", "lap_time_ratio", "offroad_fraction", "mean_speed")


def group_metrics(rows: list[dict], seed: int = 0) -> dict:
    """Per group: the rates (completion_rate, clean_completion_rate: share of episodes) with 95 % Wilson
    intervals at the effective sample size, and the means (progress: lap fraction; lap_time_ratio: over episodes
    that finished where the expert did; offroad_fraction; mean_speed) with 95 % bootstrap intervals that resample
    tracks, then rollouts within them (stats.py). Each value `x` comes with `x_low` and `x_high`."""
    by_track: dict[int, list[dict]] = {}
    for row in rows:
        by_track.setdefault(row["track"], []).append(row)
    clusters = list(by_track.values())
    out: dict = {"episodes": len(rows), "tracks": len(clusters)}
    for name, key in zip(RATES, ("finished", "clean"), strict=True):
        rate, low, high = clustered_rate([[float(r[key]) for r in c] for c in clusters])
        out.update({name: _r(rate), f"{name}_low": _r(low), f"{name}_high": _r(high)})
    for i, name in enumerate(MEANS):
        values = [[np.nan if r[name] is None else r[name] for r in c] for c in clusters]
        digits = 3 if name == "mean_speed" else 4
        mean, low, high = hierarchical_bootstrap(values, nanmean_or_nan, seed=[seed, _BOOTSTRAP_STREAM, i])
        out.update({name: _r(mean, digits), f"{name}_low": _r(low, digits), f"{name}_high": _r(high, digits)})
    return out


def action_mix(episodes: list[Episode]) -> dict[str, float]:
    counts = Counter(a for ep in episodes for a in ep.actions)
    total = max(sum(counts.values()), 1)
    return {name: _r(counts.get(i, 0) / total) for i, name in enumerate(ACTION_NAMES)}


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Half the L1 distance between two action mixes: 0 = the same mix, 1 = no action in common."""
    return _r(0.5 * sum(abs(p[k] - q[k]) for k in p))


# ------------------------------------------------------------------------------------------------- setup


def track_seeds(params) -> list[int]:
    """eval.track_seeds, or seeds 0 .. eval.n_tracks - 1 of the held-out stream."""
    return list(params.track_seeds) or list(range(params.n_tracks))


def capture_interval_ms(cache_dir: Path) -> float:
    """The frame interval of the training data: the most common capture interval among the cache's replays."""
    meta_path = Path(cache_dir) / "cache_meta.json"
    try:
        replays = json.loads(meta_path.read_text(encoding="utf-8"))["replays"]
    except (OSError, ValueError, KeyError):
        replays = []
    intervals = Counter(round(1000.0 / r["fps"], 6) for r in replays if r.get("fps"))
    if not intervals:
        raise ParamsError(
            "eval.decision_interval_ms",
            f"0 means the capture interval of the training data, but {meta_path} records no replay fps; "
            "set the interval in ms",
        )
    return intervals.most_common(1)[0][0]


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`; "module:id" imports the module first (as gymnasium.make does)."""
    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        return gym.spec(name)
    except ModuleNotFoundError as exc:
        raise ParamsError("eval.env", f"{env_id!r}: cannot import {module!r} ({exc})") from None
    except gym.error.Error:
        raise ParamsError("eval.env", f"{env_id!r} is not a registered Gymnasium id") from None


@dataclass
class EvalSetup:
    """Everything an evaluation run needs besides the policy, resolved from params."""

    env_id: str
    tracks: list[int]
    seed: int
    decision_interval_ms: float
    frame_interval_ms: float
    time_limit_s: float
    offroad_limit_s: float
    stuck_limit_s: float
    render_size: tuple[int, int] = (128, 128)  # (height, width) the synthetic env renders at
    video_tracks: int = 3
    rollouts_per_track: int = 1  # of the sampled policy; every other group drives each track once

    @property
    def synthetic(self) -> bool:
        """The project's simulator (expert, blind baselines and track maps need it)."""
        return env_spec(self.env_id).entry_point == ENTRY_POINT

    def make_env(self, track: int, observation: dict, **synth_only) -> gym.Env:
        """One track's env. `observation`: image_height, image_width, n_stack, include_floats (the policy's);
        `synth_only`: keywords only the synthetic env takes (autopilot, observe)."""
        kwargs = dict(
            track=track,
            decision_interval_ms=self.decision_interval_ms,
            frame_interval_ms=self.frame_interval_ms,
            time_limit_s=self.time_limit_s,
            offroad_limit_s=self.offroad_limit_s,
            stuck_limit_s=self.stuck_limit_s,
            **observation,
        )
        if self.synthetic:
            kwargs.update(render_height=self.render_size[0], render_width=self.render_size[1], **synth_only)
        return gym.make(self.env_id, **kwargs)


def setup_from_params(params, cache_dir: Path) -> EvalSetup:
    """`params`: the whole Params (the eval group, and synth's frame size, which the env renders at).

    Stacked frames are a capture interval apart, as in training, whatever the decision interval; without a cache
    to read it from, the decision interval stands in (decision_interval_ms 0 then needs the cache)."""
    ev = params.eval
    try:
        capture = capture_interval_ms(cache_dir)
    except ParamsError:
        if ev.decision_interval_ms == 0:
            raise
        capture = None
    decision = float(ev.decision_interval_ms or capture)
    return EvalSetup(
        env_id=ev.env,
        tracks=track_seeds(ev),
        seed=ev.seed,
        decision_interval_ms=decision,
        frame_interval_ms=capture if capture is not None else decision,
        time_limit_s=ev.time_limit_s,
        offroad_limit_s=ev.offroad_limit_s,
        stuck_limit_s=ev.stuck_limit_s,
        render_size=(params.synth.height, params.synth.width),
        video_tracks=ev.video_tracks,
        rollouts_per_track=ev.rollouts_per_track,
    )


def _check_spaces(env: gym.Env, policy: ExportedPolicy, env_id: str) -> None:
    space = env.observation_space
    frames = space["frames"] if isinstance(space, gym.spaces.Dict) else space
    want = (policy.n_stack, *policy.image_hw)
    if tuple(frames.shape) != want or frames.dtype != np.uint8:
        raise ParamsError(
            "eval.env", f"{env_id} observes {frames.dtype} {tuple(frames.shape)}; the policy needs uint8 {want}"
        )
    if policy.use_floats and not isinstance(space, gym.spaces.Dict):
        raise ParamsError("eval.env", f"{env_id} gives no float inputs; the policy was trained with bc.use_floats")
    if not (isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == N_ACTIONS):
        raise ParamsError("eval.env", f"{env_id} acts with {env.action_space}; the policy needs Discrete({N_ACTIONS})")


# ---------------------------------------------------------------------------------------------- the run


def _run_group(setup: EvalSetup, policy, observation: dict, rollouts: int = 1, keep_frames: int = 0, **synth_only):
    """Every track `rollouts` times (rollout-major: the first episodes are one of each track, for the video)."""
    runs = [(track, i) for i in range(rollouts) for track in setup.tracks]
    envs = [setup.make_env(track, observation, **synth_only) for track, _ in runs]
    try:
        return envs, rollout(envs, runs, policy, setup.seed, keep_frames)
    finally:
        for env in envs:
            env.close()


def evaluate(setup: EvalSetup, model_dir: Path) -> dict:
    """Drive every group on every track; return {"metrics", "tracks", "action_mix", "episodes", "geometry",
    "policy_note"}. The policy runs on one thread: its batches (one frame per live episode) are too small to gain
    from more, and a second thread spinning on a busy machine made each forward 5-20x slower."""
    with one_torch_thread():
        return _evaluate(setup, model_dir)


@contextmanager
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _evaluate(setup: EvalSetup, model_dir: Path) -> dict:
    policies, note = {}, None
    try:
        policies = {g: ExportedPolicy(model_dir, how, setup.seed) for g, how in POLICY_GROUPS.items()}
    except PolicyUnavailable as exc:
        note = str(exc)
    observation = dict(image_height=64, image_width=64, n_stack=1, include_floats=False)
    if policies:
        policy = policies["policy"]
        observation = dict(
            image_height=policy.image_hw[0],
            image_width=policy.image_hw[1],
            n_stack=policy.n_stack,
            include_floats=policy.use_floats,
        )
        probe = setup.make_env(setup.tracks[0], observation)
        _check_spaces(probe, policy, setup.env_id)
        probe.close()
    synthetic = setup.synthetic
    blind = {"observe": False} if synthetic else {}

    episodes: dict[str, list[Episode]] = {}
    geometry = {}
    if synthetic:
        envs, episodes["expert"] = _run_group(setup, ConstantPolicy(0), observation, autopilot=True, **blind)
        geometry = {t: env.unwrapped.track for t, env in zip(setup.tracks, envs, strict=True)}
    if policies:
        _, episodes["policy"] = _run_group(
            setup, policies["policy"], observation, setup.rollouts_per_track, keep_frames=setup.video_tracks
        )
        _, episodes["policy_greedy"] = _run_group(setup, policies["policy_greedy"], observation)
    _, episodes["random"] = _run_group(setup, RandomPolicy(setup.seed), observation, **blind)
    _, episodes["always_accel"] = _run_group(setup, ConstantPolicy(ALWAYS_ACCEL), observation, **blind)

    expert_laps = {r["track"]: r["lap_time_s"] for r in track_rows("expert", episodes.get("expert", []), {})}
    rows = {g: track_rows(g, episodes[g], expert_laps) for g in GROUPS if g in episodes}
    metrics = {g: group_metrics(rows[g], setup.seed) if g in rows else None for g in GROUPS}
    mixes = {g: action_mix(episodes[g]) for g in ("policy", "expert") if g in episodes}
    if "policy" in mixes and "expert" in mixes:
        metrics["policy"]["action_mix_distance"] = total_variation(mixes["policy"], mixes["expert"])
        mixes["total_variation"] = metrics["policy"]["action_mix_distance"]
    return {
        "metrics": metrics,
        "tracks": [row for g in GROUPS for row in rows.get(g, [])],
        "action_mix": mixes,
        "episodes": episodes,
        "geometry": geometry,
        "policy_note": note,
    }


def write_outputs(result: dict, setup: EvalSetup, out_dir: Path) -> None:
    """metrics.json, tracks.json, action_mix.json and media/ (video and map data) under `out_dir`."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / MEDIA_DIR, ignore_errors=True)  # stale media must never ride along
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / METRICS_FILE, result["metrics"])
    write_json(out_dir / TRACKS_FILE, {"note": result["policy_note"], "rows": result["tracks"]})
    write_json(out_dir / ACTION_MIX_FILE, result["action_mix"])
    write_media(result, setup, out_dir / MEDIA_DIR)


def summary_lines(result: dict) -> list[str]:
    """One line per group: each figure with its 95 % interval."""
    lines = []
    for group in GROUPS:
        m = result["metrics"].get(group)
        if m is None:
            continue

        def fig(name: str, spec: str = ".2f", m=m) -> str:
            return format_interval(m[name], m[f"{name}_low"], m[f"{name}_high"], spec)

        lines.append(
            f"  {group:<13} completion {fig('completion_rate')}  clean {fig('clean_completion_rate')}  progress "
            f"{fig('progress')}  lap time ratio {fig('lap_time_ratio')}  off road {fig('offroad_fraction')}  "
            f"speed {fig('mean_speed', '.1f')} m/s  ({m['episodes']} episodes)"
        )
    if result["policy_note"]:
        lines.append(f"  policy not evaluated: {result['policy_note']}")
    return lines


# ---------------------------------------------------------------------------------------------- benchmark


def _best_seconds(fn, calls: int, rounds: int, clock=time.perf_counter) -> float:
    """Seconds per call of `fn`, the best of `rounds` rounds (a burst of load on a shared machine hurts a round,
    not the figure)."""
    best = float("inf")
    for _ in range(rounds):
        start = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - start) / calls)
    return best


def bench(model_dir: Path | None = None, decisions: int = 300, batch: int = 32, rounds: int = 3) -> dict:
    """Costs on this machine, each the best of `rounds`: physics steps/s (blind, always accelerating, 100 ms
    decisions); observed decisions per CPU-second (rendered, JPEG round trip and resize as ingest does) with 1
    env and with `batch` envs on as many tracks stepped in lockstep, as `evaluate` steps them; rendering one
    frame; and one batched policy forward of `batch` frames (on one thread, as `evaluate` runs it)."""
    from .synthetic.env import SynthTrackEnv

    endless = dict(time_limit_s=1e6, offroad_limit_s=1e6, stuck_limit_s=1e6)
    out: dict[str, float] = {}
    blind = SynthTrackEnv(track=0, observe=False, **endless)
    blind.reset(seed=0)
    per_decision = _best_seconds(lambda: blind.step(ALWAYS_ACCEL), decisions, rounds)
    out["physics_steps_per_s"] = round(10 / per_decision)  # 10 physics steps of 10 ms per 100 ms decision
    one = SynthTrackEnv(track=0, **endless)
    one.reset(seed=0)
    out["render_ms"] = round(1000 * _best_seconds(one.render_frame, decisions, rounds), 3)
    out["frame_shape"] = list(one.render_frame().shape)
    for n_envs in (1, batch):
        envs = [SynthTrackEnv(track=t, **endless) for t in range(n_envs)]
        for env in envs:
            env.reset(seed=0)  # builds the renderers (their road textures) outside the timing

        def step_all(envs=envs):
            for env in envs:
                env.step(ALWAYS_ACCEL)

        calls = max(1, decisions // n_envs)
        seconds = _best_seconds(step_all, calls, rounds, clock=time.process_time) / n_envs
        out[f"observed_decisions_per_cpu_s_{n_envs}_env{'s' if n_envs > 1 else ''}"] = round(1 / seconds, 1)
    if model_dir is not None:
        policy = ExportedPolicy(model_dir)
        obs = [np.zeros((policy.n_stack, *policy.image_hw), dtype=np.uint8)] * batch
        with one_torch_thread():
            policy.logits(obs)
            seconds = _best_seconds(lambda: policy.logits(obs), 20, rounds)
        out[f"policy_forward_ms_batch{batch}"] = round(1000 * seconds, 3)
    return out


def bench_main(argv: list[str] | None = None) -> int:
    """`tmpretrain bench eval [--model-dir models/bc]`: env, render and policy costs on this machine as JSON."""
    ap = argparse.ArgumentParser(prog="tmpretrain bench eval", description=bench_main.__doc__.split(": ", 1)[1])
    ap.add_argument("--model-dir", type=Path, default=None, help="an export directory to time the policy of")
    args = ap.parse_args(argv)
    print(json.dumps(bench(args.model_dir), indent=2))
    return 0
