"""params.yaml as one validated schema (pydantic v2 models): one group per stage, every knob of every run.

The model defaults equal the shipped params.yaml (a test holds them together), so a key left out of a params file
means what the default pipeline does. Each field's description is the reference in docs/params.md
(`tmpretrain check --markdown > docs/params.md`; a test keeps the file equal to that output).

Validation happens before any work starts (the `validate` stage, then every stage again): an unknown key, a wrong
type, a non-finite or out-of-range number, a cross-field conflict or an accelerator this machine lacks raises one
ParamsError naming the full key and what is allowed. Types are strict: YAML's `01`, `[data/cache]` or `yes` never
silently become another value. The file is read as DVC reads it (YAML 1.2, `yamlio`), so every value is the one
`dvc exp show` shows: `lr: 1e-3` is the number 0.001, `yes` is a string.

This module imports pydantic and ruamel.yaml only (torch just to look for a requested GPU), so validating is fast.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .convs import MIN_IMAGE_SIDE
from .errors import ParamsError
from .paths import check_output_params
from .yamlio import YamlError, YamlTooDeep, read_yaml

PARAMS_FILE = Path("params.yaml")
GROUPS = ("synth", "data", "vis", "bc", "eval", "rl")
MAX_SEED = 2**32 - 1  # Lightning's seed_everything silently replaces a larger seed by 0
MAX_PARAMS_BYTES = 1 << 20  # the shipped params.yaml is 3 KB
AGENT_DENSE_HIDDEN = 1024  # the agent's dense_hidden_dimension: its A_head hidden width is half of it

ENV_ID = "tmpretrain/SynthTrack-v0"  # the simulator (synthetic/env.py registers it)


class _Rule(ValueError):
    """A cross-field rule broken at `field` (a key relative to the model that checks it)."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show(value) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -------------------------------------------------------------------------------------------- scalar types


def _finite_number(value):
    if isinstance(value, str) and value.strip().lower().lstrip("+-.") in ("nan", "inf", "infinity"):
        # `dvc exp run -S bc.lr=.nan` writes the text '.nan'
        raise ValueError(f"expected a finite number, got {_show(value)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_show(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{_show(value)} is too large for a number") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


def _integer(value):
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)  # YAML `2.0`: the integer it spells
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_show(value)}")
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_show(value)}")
    return value


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {_show(value)}")
    return value


def _path(value):
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError(f"expected a path (a non-empty string), got {_show(value)}")
    return value


def _normalization(value):
    # YAML reads the normalisation name `01` as the integer 1: restore the string the user meant.
    return "01" if not isinstance(value, bool) and value in (1, "1") else value


def _list(value):
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {_show(value)}")
    return value


Float = Annotated[float, BeforeValidator(_finite_number)]
Int = Annotated[int, BeforeValidator(_integer)]
Bool = Annotated[bool, BeforeValidator(_boolean)]
Text = Annotated[str, BeforeValidator(_text)]
PathText = Annotated[str, BeforeValidator(_path)]
Seed = Annotated[int, BeforeValidator(_integer), Ge(0), Le(MAX_SEED)]
OffsetMs = Annotated[int, BeforeValidator(_integer), Ge(-10_000), Le(10_000)]
Normalization = Annotated[Literal["iqn", "01"], BeforeValidator(_normalization)]


def _field(default, description: str, **constraints):
    return Field(default=default, description=description, **constraints)


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ------------------------------------------------------------------------------------------------ groups


class SynthParams(_Group):
    """Stage synthesize: the embedded default data, procedurally generated replays in the capture layout."""

    seed: Seed = _field(0, "seed of the generated tracks, drivers and frames")
    n_tracks: Int = _field(12, "tracks to generate", ge=1, le=10_000)
    replays_per_track: Int = _field(3, "replays (drivers) per track", ge=1, le=1_000)
    seconds_per_replay: Float = _field(40.0, "simulated seconds per replay", ge=1.0, le=3_600.0)
    fps: Float = _field(10.0, "frames per simulated second; the action timeline is always 10 ms", ge=1.0, le=100.0)
    width: Int = _field(128, "stored frame width (ingest resizes to data.image_width)", ge=16, le=1_024)
    height: Int = _field(128, "stored frame height (ingest resizes to data.image_height)", ge=16, le=1_024)
    perturbation_rate: Float = _field(
        0.5,
        "recovery data (DART-style): perturbations per simulated second that override the executed steering or "
        "throttle for a moment while the timeline keeps the expert's choice; 0 = clean demonstrations",
        ge=0.0,
        le=10.0,
    )
    workers: Int = _field(2, "worker processes (speed only: the bytes do not depend on it)", ge=1, le=256)
    out_dir: PathText = _field("data/replays", "where the capture tree is written (deleted and rewritten)")


class DataParams(_Group):
    """Stage ingest: which capture tree to read and how to preprocess it into the uint8 frame store."""

    replays_dir: PathText = _field("data/replays", "any capture tree (docs/data.md); default: the synthesized one")
    cache_dir: PathText = _field("data/cache", "where the frame store is written")
    image_height: Int = _field(64, "frame height in the store: the agent's RL resolution", ge=8, le=2_048)
    image_width: Int = _field(64, "frame width in the store: the agent's RL resolution", ge=8, le=2_048)
    val_fraction: Float = _field(
        0.2,
        "share of tracks held out for validation (split by track, seeded); ingest keeps at least one val and one "
        "train track",
        gt=0.0,
        le=0.9,
    )
    test_fraction: Float = _field(
        0.2,
        "share of tracks held out for the test split: never seen by training, selection or early stopping; "
        "0 = no test split",
        ge=0.0,
        le=0.9,
    )
    split_seed: Seed = _field(0, "seed of the train/val/test track split")
    strict: Bool = _field(False, "true: the first bad replay fails ingest; false: skip it and list it")
    include_floats: Bool = _field(
        False, "also store the manifest `meta` race state as 184 floats (needed by bc.use_floats)"
    )
    workers: Int = _field(2, "decode worker processes (speed only: the store does not depend on it)", ge=1, le=256)


class EarlyStoppingParams(_Group):
    """Stop training when the monitored val metric stops improving."""

    enabled: Bool = _field(False, "stop early (the epochs so far still count for selection)")
    monitor: Text = _field("val/loss", "a val metric the run logs (docs/training.md)")
    mode: Literal["min", "max"] = _field("min", "min: lower is better; max: higher is better")
    patience: Int = _field(10, "epochs without improvement before stopping", ge=1, le=100_000)
    min_delta: Float = _field(0.0, "smallest change that counts as an improvement", ge=0.0, le=1e6)


class SelectionParams(_Group):
    """Which epoch's weights are exported."""

    metric: Text = _field("val/loss", "a metric the run logs; the best epoch by it is exported")
    mode: Literal["min", "max"] = _field("min", "min: lower is better; max: higher is better")


class TrainerParams(_Group):
    """Passed to lightning.Trainer (docs/scale-out.md)."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = _field(
        "auto", "device kind; auto = a GPU when this machine has one, else the CPU"
    )
    devices: Int = _field(1, "processes (devices) per node", ge=1, le=1_024)
    num_nodes: Int = _field(1, "machines", ge=1, le=1_024)
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_notebook", "fsdp"] = _field(
        "auto", "auto for one device; ddp for several"
    )
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"] = _field("32-true", "numeric precision")
    num_workers: Int = _field(0, "data loader worker processes per training process", ge=0, le=256)
    cache_on_device: Bool = _field(
        False, "keep the whole uint8 frame store on the accelerator (gathers then never leave the device)"
    )
    channels_last: Bool = _field(False, "channels-last memory format (faster convolutions on some GPUs)")
    compile: Bool = _field(False, "torch.compile the model")
    cpu_threads: Int = _field(
        2,
        "torch CPU threads; a CPU run's bytes depend on it, so it is fixed (not the machine's core count) and "
        "recorded in the export's metadata",
        ge=1,
        le=1_024,
    )

    @field_validator("accelerator")
    @classmethod
    def _exists_on_this_machine(cls, accelerator: str) -> str:
        if accelerator in ("gpu", "cuda"):
            import torch  # only when a GPU is asked for: validating stays fast otherwise

            if not torch.cuda.is_available():
                raise ValueError(
                    f"{accelerator!r} asks for a CUDA GPU but torch finds none on this machine "
                    f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use auto or cpu"
                )
        elif accelerator == "mps":
            import torch

            if not torch.backends.mps.is_available():
                raise ValueError("'mps' asks for an Apple GPU but torch finds none on this machine; use auto or cpu")
        return accelerator

    @model_validator(mode="after")
    def _enough_devices(self):
        if self.accelerator in ("gpu", "cuda"):
            import torch

            if self.devices > torch.cuda.device_count():
                raise _Rule("devices", f"{self.devices} GPUs asked for, this machine has {torch.cuda.device_count()}")
        elif self.accelerator == "mps" and self.devices > 1:
            raise _Rule("devices", f"{self.devices} Apple GPUs asked for; mps has one device")
        return self


class TrainingParams(_Group):
    """The knobs both training stages share (each stage sets its own defaults)."""

    epochs: Int = _field(12, "maximum epochs", ge=1, le=100_000)
    batch_size: Int = _field(256, "samples per batch (per process with several devices)", ge=2, le=1_048_576)
    lr: Float = _field(5e-4, "learning rate (Adam / AdamW)", gt=0.0, le=10.0)
    weight_decay: Float = _field(0.0, "> 0 switches Adam to AdamW with this decay", ge=0.0, le=10.0)
    grad_clip: Float = _field(0.0, "clip the gradient norm to this value; 0 = off", ge=0.0, le=1e6)
    seed: Seed = _field(0, "seed of initialisation, batch order, dropout and augmentation")
    early_stopping: EarlyStoppingParams = Field(default_factory=EarlyStoppingParams)
    selection: SelectionParams = Field(default_factory=SelectionParams)
    trainer: TrainerParams = Field(default_factory=TrainerParams)

    @model_validator(mode="before")
    @classmethod
    def _nested_groups_keep_stage_defaults(cls, data):
        """`bc: {early_stopping: {patience: 5}}` changes the patience of bc's own early-stopping default (enabled)
        instead of starting from the generic one (disabled)."""
        if isinstance(data, dict):
            data = dict(data)
            for name in ("early_stopping", "selection", "trainer"):
                if isinstance(data.get(name), dict):
                    default = cls.model_fields[name].get_default(call_default_factory=True)
                    data[name] = {**default.model_dump(), **data[name]}
        return data


class VisParams(TrainingParams):
    """Stage pretrain_vis (Level 0): pretrain the agent's image encoder on frames alone."""

    task: Literal["autoencoder", "vae", "simclr"] = _field("autoencoder", "the Level 0 objective")
    image_normalization: Normalization = _field("iqn", 'iqn = (x - 128) / 128, the agent\'s; "01" = x / 255')
    epochs: Int = _field(6, "maximum epochs", ge=1, le=100_000)
    lr: Float = _field(1e-3, "learning rate (Adam / AdamW)", gt=0.0, le=10.0)
    latent_dim: Int = _field(128, "autoencoder / VAE bottleneck width", ge=1, le=65_536)
    vae_beta: Float = _field(1e-3, "weight of the VAE's KL term", ge=0.0, le=1e6)
    simclr_temperature: Float = _field(0.2, "SimCLR softmax temperature", gt=0.0, le=100.0)
    simclr_projection_dim: Int = _field(64, "SimCLR projection head width", ge=1, le=65_536)


class BCParams(TrainingParams):
    """Stage pretrain_bc (Level 1): behavioral cloning of the driver's action at one or several time offsets."""

    encoder_init: Literal["vis", "none"] = _field("vis", "vis = start from models/vis/encoder.pt; none = random init")
    image_normalization: Normalization = _field("iqn", 'iqn = (x - 128) / 128, the agent\'s; "01" = x / 255')
    target: Literal["current_tick", "next_tick"] = _field(
        "current_tick", "current_tick | next_tick (= every offset + one 10 ms step)"
    )
    time_offsets_ms: Annotated[list[OffsetMs], BeforeValidator(_list)] = _field(
        [-10, 0, 10, 100], "label offsets in ms, one head each; distinct, within +-10000"
    )
    offset_weights: Annotated[list[Annotated[Float, Ge(0.0)]], BeforeValidator(_list)] = _field(
        [0.2, 1.0, 0.5, 0.3], "loss = sum(w_d * CE_d) / sum(w_d): one weight >= 0 per offset, positive sum"
    )
    export_offset_ms: OffsetMs = _field(
        0, "which head becomes actions_head.pt, chosen by value: one of bc.time_offsets_ms"
    )
    n_stack: Int = _field(1, "frames per sample (shared encoder, fused features)", ge=1, le=16)
    checkpoint_stack: Bool = _field(
        True, "n_stack > 1: recompute stacked frames' activations in backward (memory of n_stack 1)"
    )
    use_actions_head: Bool = _field(
        True,
        "true: the agent's A_head layout per offset (exported as actions_head.pt); false: one Linear per offset "
        "(exported as linear_head.pt, which evaluate drives but the agent cannot load)",
    )
    dense_hidden_dimension: Int = _field(
        AGENT_DENSE_HIDDEN,
        f"the agent's dense_hidden_dimension: the heads' hidden width is half of it; must be {AGENT_DENSE_HIDDEN} "
        "(the agent's) with bc.use_actions_head",
        ge=2,
        le=65_536,
    )
    dropout: Float = _field(0.2, "dropout on the head input features", ge=0.0, le=0.95)
    action_head_dropout: Float = _field(0.1, "dropout between the two Linear layers of A_head", ge=0.0, le=0.95)
    use_floats: Bool = _field(False, "feed the 184 race-state floats (needs data.include_floats)")
    class_weighting: Literal["none", "inverse_frequency"] = _field(
        "none", "loss weight per action class: none | inverse_frequency (of the train labels)"
    )
    epochs: Int = _field(25, "maximum epochs", ge=1, le=100_000)
    weight_decay: Float = _field(0.01, "> 0 switches Adam to AdamW with this decay", ge=0.0, le=10.0)
    # The original study's finding, and this data's: val loss flattens after ~20-25 epochs, so stop when it does.
    early_stopping: EarlyStoppingParams = Field(default_factory=lambda: EarlyStoppingParams(enabled=True, patience=8))

    @model_validator(mode="after")
    def _cross_field_rules(self):
        self.check()
        return self

    def check(self) -> None:
        """Rules that no single key can express (raised as the key most likely at fault)."""
        offsets, weights = self.time_offsets_ms, self.offset_weights
        if not offsets:
            raise _Rule("time_offsets_ms", "must list at least one offset (ms)")
        if len(set(offsets)) != len(offsets):
            raise _Rule("time_offsets_ms", f"offsets must be distinct, got {offsets}")
        if len(weights) != len(offsets):
            raise _Rule(
                "offset_weights",
                f"has {len(weights)} values but bc.time_offsets_ms has {len(offsets)} ({offsets}): one weight each",
            )
        if sum(weights) <= 0:
            raise _Rule("offset_weights", f"weights must be >= 0 with a positive sum, got {weights}")
        if self.export_offset_ms not in offsets:
            raise _Rule("export_offset_ms", f"{self.export_offset_ms} is not among bc.time_offsets_ms {offsets}")
        if self.use_actions_head and self.dense_hidden_dimension != AGENT_DENSE_HIDDEN:
            raise _Rule(
                "dense_hidden_dimension",
                f"{self.dense_hidden_dimension} gives an A_head hidden width of {self.dense_hidden_dimension // 2}; "
                f"the agent's is {AGENT_DENSE_HIDDEN // 2} (use {AGENT_DENSE_HIDDEN}, or bc.use_actions_head: false)",
            )
        if self.trainer.cache_on_device and self.use_floats:
            raise _Rule("trainer.cache_on_device", "is not supported together with bc.use_floats")


class EvalParams(_Group):
    """Stage evaluate: drive the exported policy on tracks it never saw."""

    env: Text = _field(ENV_ID, "any Gymnasium id with the same observation/action spaces")
    n_tracks: Int = _field(
        32, "held-out tracks: seeds 0 .. n_tracks - 1 of a stream disjoint from synthesize's", ge=1, le=10_000
    )
    track_seeds: Annotated[list[Seed], BeforeValidator(_list)] = _field(
        [], "explicit track seeds (distinct); non-empty overrides eval.n_tracks"
    )
    seed: Seed = _field(
        0, "the expert's style and mistakes, the random baseline, sampling and the bootstrap (not the tracks)"
    )
    time_limit_s: Float = _field(60.0, "truncate an episode after this much simulated time", gt=0.0, le=86_400.0)
    decision_interval_ms: Int = _field(
        0, "each action held this long; 0 = the capture frame interval of the training data", ge=0, le=10_000
    )
    offroad_limit_s: Float = _field(5.0, "truncate after this long off the road without a break", gt=0.0, le=86_400.0)
    stuck_limit_s: Float = _field(
        5.0, "truncate after this long without gaining 1 m on the best progress", gt=0.0, le=86_400.0
    )
    rollouts_per_track: Int = _field(
        4,
        "episodes per track of the sampled policy (group policy: each decision drawn from its softmax, seeded per "
        "track and rollout); the greedy policy (group policy_greedy, its argmax) and the other groups drive each "
        "track once",
        ge=1,
        le=1_000,
    )
    video_tracks: Int = _field(3, "tracks whose rollout goes into the video (at most this many)", ge=0, le=10_000)

    @model_validator(mode="after")
    def _distinct_seeds(self):
        if len(set(self.track_seeds)) != len(self.track_seeds):
            raise _Rule("track_seeds", f"seeds must be distinct, got {self.track_seeds}")
        return self


# The downstream RL arms (tmpretrain.rl.arms): where the network starts and whether demonstrations train it too.
RL_ARMS = ("scratch", "vis", "bc", "bc_dqfd")
Schedule = Annotated[list[Annotated[list[Float], BeforeValidator(_list)]], BeforeValidator(_list)]


def _check_schedule(key: str, points: list[list[float]], low: float, high: float) -> None:
    """A schedule is [[env step, value], ...]: steps whole, from 0, increasing; values within [low, high]."""
    if not points:
        raise _Rule(key, "must list at least one [env step, value] point")
    if any(len(p) != 2 for p in points) or any(not p[0].is_integer() for p in points):
        raise _Rule(key, f"each point is [env step, value] with a whole step, got {points}")
    steps = [p[0] for p in points]
    if steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise _Rule(key, f"steps must start at 0 and increase, got {[int(s) for s in steps]}")
    if any(not low <= p[1] <= high for p in points):
        raise _Rule(key, f"values must lie in [{_number(low)}, {_number(high)}], got {[p[1] for p in points]}")


class RLParams(_Group):
    """Stage rl: the agent's IQN network trained in the simulator from scratch and from the exports (docs/rl.md).

    Training tracks are synthesize's (synth.seed, the tracks the replays were driven on); evaluation is the
    evaluate protocol (eval.env, its decision interval and track limits) on held-out tracks, greedy policy. The
    learner knobs are tmpretrain.rl.learner.RLConfig's, whose defaults are read from here: this group is their one
    source. Defaults are the default pipeline's short run (~5 min on 2 cores); the full study: docs/rl.md."""

    arms: Annotated[list[Literal[RL_ARMS]], BeforeValidator(_list)] = _field(
        ["scratch", "vis", "bc", "bc_dqfd"],
        "arms to train (distinct, scratch among them: every arm is compared with it): scratch = the agent's init; "
        "vis = img_head from models/vis; bc = img_head and A_head from models/bc; bc_dqfd = bc, then DQfD: demo-only "
        "TD + margin updates before acting, demonstrations mixed into every batch, an annealed large-margin term",
    )
    seeds: Annotated[list[Seed], BeforeValidator(_list)] = _field(
        [0, 1], "one run per arm and seed (distinct): network init, exploration, replay, demonstrations"
    )
    env_steps: Int = _field(
        3_000, "environment steps per run (all training envs together): the budget", ge=1, le=100_000_000
    )
    eval_every: Int = _field(
        1_000,
        "evaluate the greedy policy every this many env steps (and at step 0 and at the end)",
        ge=1,
        le=100_000_000,
    )
    train_tracks: Int = _field(
        4, "training envs, stepped in lockstep: tracks 0 .. n - 1 of synthesize's stream (synth.seed)", ge=1, le=1_024
    )
    eval_tracks: Int = _field(
        4,
        "held-out evaluation tracks: seeds 0 .. n - 1 of evaluate's stream (the first of eval's tracks)",
        ge=1,
        le=10_000,
    )
    workers: Int = _field(2, "runs in parallel, one process and one torch thread each (speed only)", ge=1, le=256)
    demo_steps: Int = _field(
        1_000,
        "arms with demonstrations: scripted-driver decisions on the training tracks in the demo buffer",
        ge=1,
        le=10_000_000,
    )
    demo_pretrain_updates: Int = _field(
        200,
        "arms with demonstrations: learner updates on demonstrations alone before the first action (DQfD)",
        ge=0,
        le=10_000_000,
    )
    # learner (RLConfig; Linesight's values and how they are scaled: docs/rl.md)
    batch_size: Int = _field(32, "transitions per update", ge=1, le=65_536)
    n_step: Int = _field(3, "n-step returns (Linesight 3)", ge=1, le=100)
    gamma: Float = _field(0.99, "discount per decision (0.99 per 100 ms: a 10 s horizon)", gt=0.0, le=1.0)
    reward_scale: Float = _field(
        0.01, "reward per metre of credited progress (the env pays 1 per metre)", gt=0.0, le=1e6
    )
    lr_schedule: Schedule = _field([[0, 0.001]], "learning rate by env step, [[step, lr], ...], linear in between")
    replay_capacity: Int = _field(10_000, "transitions the replay buffer keeps (>= batch_size)", ge=1, le=100_000_000)
    learning_starts: Int = _field(500, "transitions in the buffer before the first update", ge=0, le=100_000_000)
    samples_per_transition: Float = _field(
        6.0,
        "replay ratio: times each transition is sampled on average (updates = steps x this / batch_size)",
        gt=0.0,
        le=1_024.0,
    )
    epsilon_schedule: Schedule = _field(
        [[0, 1.0], [500, 1.0], [2_500, 0.1]], "probability of a random action by env step, [[step, p], ...]"
    )
    epsilon_boltzmann_schedule: Schedule = _field(
        [[0, 0.15], [3_000, 0.03]], "probability of acting on Q plus Gaussian noise (Linesight's Boltzmann) by env step"
    )
    target_update_tau: Float = _field(
        0.02, "soft target update: target <- (1 - tau) target + tau online", gt=0.0, le=1.0
    )
    target_update_every_transitions: Int = _field(
        256,
        "soft-update the target after every this many transitions trained (Linesight 2048 over millions)",
        ge=1,
        le=100_000_000,
    )
    double_dqn: Bool = _field(False, "target action by the online network's argmax (Linesight use_ddqn: false)")
    demo_fraction: Float = _field(0.25, "arms with demonstrations: share of each batch drawn from them", ge=0.0, le=1.0)
    margin: Float = _field(0.8, "DQfD large margin: the expert's action must lead the others by this Q", ge=0.0, le=1e6)
    margin_weight: Float = _field(
        1.0, "weight of the large-margin term at the first update (demo rows only)", ge=0.0, le=1e6
    )
    margin_anneal_updates: Int = _field(
        1_000, "the margin weight falls linearly to 0 over this many updates (0 = constant)", ge=0, le=100_000_000
    )

    @model_validator(mode="after")
    def _cross_field_rules(self):
        if len(set(self.arms)) != len(self.arms):
            raise _Rule("arms", f"arms must be distinct, got {self.arms}")
        if "scratch" not in self.arms:
            raise _Rule("arms", f"must include scratch (every arm's difference is to it), got {self.arms}")
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise _Rule("seeds", f"seeds must be distinct and at least one, got {self.seeds}")
        if self.replay_capacity < self.batch_size:
            raise _Rule("replay_capacity", f"{self.replay_capacity} is less than rl.batch_size {self.batch_size}")
        _check_schedule("lr_schedule", self.lr_schedule, 1e-12, 10.0)
        _check_schedule("epsilon_schedule", self.epsilon_schedule, 0.0, 1.0)
        _check_schedule("epsilon_boltzmann_schedule", self.epsilon_boltzmann_schedule, 0.0, 1.0)
        return self


class Params(_Group):
    synth: SynthParams = Field(default_factory=SynthParams)
    data: DataParams = Field(default_factory=DataParams)
    vis: VisParams = Field(default_factory=VisParams)
    bc: BCParams = Field(default_factory=BCParams)
    eval: EvalParams = Field(default_factory=EvalParams)
    rl: RLParams = Field(default_factory=RLParams)


# ------------------------------------------------------------------------------------------- parsing


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The group model at a location such as ("bc", "trainer"), or None where the location is not a group."""
    model: type[BaseModel] = Params
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _leaf_keys(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        yield key
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _leaf_keys(field.annotation, key + ".")


def _unknown_key_hint(loc: tuple) -> str:
    """`did you mean <full key>?`: the same name one level down (bc.patience -> bc.early_stopping.patience), a
    dotted key written flat (bc.lr at the top), or the closest spelling; else the keys this group knows."""
    parent, name = loc[:-1], str(loc[-1])
    prefix = "".join(f"{p}." for p in parent)
    model = _model_at(parent) or Params
    known = list(_leaf_keys(model))
    if name in known:  # a dotted key written flat, e.g. `bc.lr: 0.1` at the top
        return f"; write it nested ({name.split('.')[0]}: {{{'.'.join(name.split('.')[1:])}: ...}})"
    deeper = [k for k in known if k.rsplit(".", 1)[-1] == name]
    close = deeper or difflib.get_close_matches(name, list(model.model_fields), n=1)
    if close:
        return f"; did you mean {' or '.join(prefix + k for k in close)}?"
    return f"; known keys: {', '.join(model.model_fields)}"


def _params_error(err: dict) -> ParamsError:
    loc = tuple(err["loc"])
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, _Rule):
        loc = (*loc, *cause.field.split("."))
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "<root>"
    if isinstance(cause, _Rule):
        return ParamsError(key, cause.reason)
    if kind == "invalid_key":  # a mapping key that is not text, e.g. `1: 2`
        key = ".".join(map(str, loc))
        kind = "extra_forbidden"
    if kind == "extra_forbidden":
        return ParamsError(key, f"unknown key{_unknown_key_hint(loc)}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        fields = (_model_at(loc) or Params).model_fields
        return ParamsError(key, f"expected a mapping of {', '.join(fields)}, got {_show(value)}")
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
        return ParamsError(key, f"{_show(value)} is not allowed; choose one of {choices}")
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx)
        size = "small" if kind.startswith("greater") else "large"
        return ParamsError(key, f"{_show(value)} is too {size}; must be {bounds[kind]} {_number(limit)}")
    if kind == "value_error":
        return ParamsError(key, str(cause))
    return ParamsError(key, f"{err['msg']} (got {_show(value)})")


def parse_params(raw) -> Params:
    """Validate a params mapping (as read from params.yaml); the first problem raises ParamsError."""
    if not isinstance(raw, dict):
        raise ParamsError("<root>", f"params.yaml must be a mapping of groups ({', '.join(GROUPS)})")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise _params_error(exc.errors()[0]) from None


def read_params_file(path: Path | str = PARAMS_FILE) -> dict:
    """The raw mapping in a params file (empty file: {}); unreadable or invalid YAML raises ParamsError."""
    path = Path(path)
    try:
        raw = read_yaml(path, MAX_PARAMS_BYTES)
    except FileNotFoundError:
        raise ParamsError("<file>", f"{path} not found (run from the repository root)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError("<file>", f"{path} cannot be read as UTF-8 text ({exc})") from None
    except YamlTooDeep:
        raise ParamsError("<file>", f"{path} is nested too deeply to be params") from None
    except YamlError as exc:
        raise ParamsError("<file>", f"{path} is not valid YAML: {exc}") from None
    return {} if raw is None else raw


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    return parse_params(read_params_file(path))


def check_frames_fit_the_encoder(data: DataParams) -> None:
    """validate: a frame store smaller than the agent's encoder takes is a valid store (ingest's own tests use
    16x16), but the training stages would refuse it only after DVC removed their outputs."""
    for side in ("image_height", "image_width"):
        value = getattr(data, side)
        if value < MIN_IMAGE_SIDE:
            raise ParamsError(
                f"data.{side}",
                f"{value} is too small for the agent's encoder; must be >= {MIN_IMAGE_SIDE} (its convolutions need "
                f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels)",
            )


def check_pipeline_params(params: Params) -> None:
    """Beyond the schema: what the pipeline's code needs (frames the encoder takes, a capture tree that exists or
    that synthesize makes) and output folders a stage may replace (tmpretrain.paths)."""
    check_frames_fit_the_encoder(params.data)
    check_env_id(params.eval.env)
    check_output_params(params)


def check_env_id(env_id: str) -> None:
    """eval.env names an environment evaluate and rl can make: the simulator, an id registered with Gymnasium, or
    `module:id` whose module exists (found, not imported: validate runs nobody's code). Checked here because DVC
    removes reports/eval before evaluate could say so."""
    module, _, name = env_id.rpartition(":")
    if module:
        if importlib.util.find_spec(module.partition(".")[0]) is None:
            raise ParamsError("eval.env", f"{env_id!r}: there is no module {module!r} to register {name!r}")
        return
    if name == ENV_ID:
        return
    from gymnasium.envs.registration import registry  # the registry only: no environment is made

    if name not in registry:
        close = difflib.get_close_matches(name, [ENV_ID, *registry], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ParamsError("eval.env", f"{env_id!r} is not a registered Gymnasium id{hint}")


def flatten(d: dict | None, prefix: str = "") -> dict:
    """{"bc": {"trainer": {"devices": 2}}} -> {"bc.trainer.devices": 2}: the dotted keys of `dvc exp run -S`."""
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def set_nested(tree: dict, key: str, value, sep: str = ".") -> dict:
    """The inverse of `flatten` for one key: set_nested({}, "bc.trainer.devices", 2) -> {"bc": {"trainer":
    {"devices": 2}}}; groups already in `tree` are kept. Returns `tree`."""
    *parents, last = key.split(sep)
    node = tree
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return tree


def as_dict(obj: BaseModel) -> dict:
    return obj.model_dump()


# ------------------------------------------------------------------------------------------- reference


def _type_and_allowed(field) -> tuple[str, str]:
    """("integer", ">= 1, <= 10000") and the like, from a field's annotation and constraints."""
    schema = field.annotation
    args = getattr(schema, "__args__", ())
    if getattr(schema, "__origin__", None) is Literal:
        return "choice", " \\| ".join(f"`{a}`" for a in args)
    limits = []
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if hasattr(meta, attr):
                limits.append(f"{sign} {_number(getattr(meta, attr))}")
    if schema is list or getattr(schema, "__origin__", None) is list:
        item = args[0] if args else None
        item_meta = getattr(item, "__metadata__", ())
        kind = "list of integers" if int in getattr(item, "__args__", (item,)) else "list of numbers"
        item_limits = [
            f"{sign} {_number(getattr(m, attr))}"
            for m in item_meta
            for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
            if hasattr(m, attr)
        ]
        return kind, ("each " + ", ".join(item_limits)) if item_limits else ""
    names = {int: "integer", float: "number (finite)", bool: "true \\| false", str: "string"}
    kind = names.get(schema, str(schema))
    if field.metadata and any(getattr(m, "func", None) is _path for m in field.metadata):
        kind = "path"
    return kind, ", ".join(limits)


def _format_default(value) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`[{', '.join(map(str, value))}]`"
    return f"`{value}`"


def _reference_rows(model: BaseModel, prefix: str):
    fields = type(model).model_fields
    nested = [name for name in fields if isinstance(getattr(model, name), BaseModel)]
    for name in [n for n in fields if n not in nested]:
        field, value = fields[name], getattr(model, name)
        kind, allowed = _type_and_allowed(field)
        description = (field.description or "").replace("|", "\\|")
        yield f"| `{prefix}{name}` | {kind} | {_format_default(value)} | {allowed} | {description} |"
    for name in nested:  # early_stopping, selection, trainer after the group's own keys
        yield from _reference_rows(getattr(model, name), f"{prefix}{name}.")


def markdown_reference() -> str:
    """docs/params.md: every key with its type, default, allowed values and meaning, from the schema."""
    lines = [
        "# params.yaml reference",
        "",
        "<!-- Generated by `tmpretrain check --markdown > docs/params.md`; tests/test_params.py checks",
        "     that this file equals that output. Edit the descriptions in src/tmpretrain/params.py. -->",
        "",
        "Every key of every group, as the schema in `src/tmpretrain/params.py` validates it. Set one for a run with",
        "`tmpretrain exp run -S bc.lr=0.0002` (`dvc exp run` with the values checked first: docs/experiments.md);",
        "`python -m tmpretrain.stages.validate` checks a params.yaml without running anything. Numbers must be",
        "finite; integers may be written `2.0` but not `2.5`. The file is read as DVC reads it (YAML 1.2), so a value",
        "means what `dvc exp show` shows: `1e-3` is the number 0.001, `yes` and `on` are text, `017` is 17. A key",
        "the schema does not know, a wrong type or a value outside the range is one error line naming the key; a",
        "key twice in one mapping or an alias (`*name`) is refused.",
        "",
    ]
    defaults = Params()
    for group in GROUPS:
        model = getattr(defaults, group)
        lines += [f"## {group}", "", type(model).__doc__.strip(), ""]
        lines += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        lines += list(_reference_rows(model, f"{group}."))
        lines.append("")
    notes = [
        "Cross-field rules: `bc.time_offsets_ms` distinct and non-empty; `bc.offset_weights` one per offset with a",
        "positive sum; `bc.export_offset_ms` among the offsets; `bc.dense_hidden_dimension` 1024 with",
        "`bc.use_actions_head` (the agent's A_head); `bc.trainer.cache_on_device` not with `bc.use_floats`;",
        "`eval.track_seeds` distinct; `*.trainer.accelerator` `gpu`/`cuda`/`mps` only where torch finds that device",
        "(and `devices` no more than it has). Nested groups (`early_stopping`, `selection`, `trainer`) keep their",
        "stage's defaults for the keys you leave out. The `validate` stage also checks what the code needs:",
        "`data.image_height` and `data.image_width` at least the encoder's 34, a `data.replays_dir` that exists or",
        "that synthesize writes (`synth.out_dir`), and output folders (`synth.out_dir`, `data.cache_dir`) that the",
        "stage may replace (docs/reliability.md). Checks that need the data (metric names, `bc.use_floats` against",
        "the cache, the track count against `data.val_fraction`) run in the stage itself.",
        "",
    ]
    return "\n".join(lines + notes)
