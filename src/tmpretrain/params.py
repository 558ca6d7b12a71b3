"""params.yaml as typed, validated dataclasses: one group per stage, every knob of every run.

The dataclass defaults equal the shipped params.yaml (a test holds them together), so a key left out of a
params file means what the default pipeline does.

Validation happens before any work starts: an unknown key (a typo), a wrong type or a value outside its allowed set
raises ParamsError naming the full key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ParamsError

PARAMS_FILE = Path("params.yaml")


def _choice(default, *choices):
    return field(default=default, metadata={"choices": choices})


def _at_least(default, low, *, strict: bool = False):
    return field(default=default, metadata={"min": low, "strict": strict})


def _between(default, low, high):
    return field(default=default, metadata={"min": low, "max": high})


@dataclass
class SynthParams:
    """The embedded default data: procedurally generated replays in the capture layout."""

    seed: int = 0
    n_tracks: int = _at_least(12, 1)
    replays_per_track: int = _at_least(3, 1)
    seconds_per_replay: float = _at_least(40.0, 1.0)
    fps: float = _between(10.0, 1.0, 100.0)
    width: int = _at_least(128, 16)
    height: int = _at_least(128, 16)
    workers: int = _at_least(2, 1)
    out_dir: str = "data/replays"


@dataclass
class DataParams:
    """Ingest: which capture tree to read and how to preprocess it into the frame store."""

    replays_dir: str = "data/replays"
    cache_dir: str = "data/cache"
    image_height: int = _at_least(64, 8)
    image_width: int = _at_least(64, 8)
    val_fraction: float = _between(0.2, 0.0, 0.9)
    split_seed: int = 0
    strict: bool = False
    # Also store the manifest's race-state `meta` as 184-float vectors (needed by bc.use_floats).
    include_floats: bool = False
    workers: int = _at_least(2, 1)


@dataclass
class EarlyStoppingParams:
    enabled: bool = False
    monitor: str = "val/loss"
    mode: str = _choice("min", "min", "max")
    patience: int = _at_least(10, 1)
    min_delta: float = _at_least(0.0, 0.0)


@dataclass
class SelectionParams:
    """Which epoch's weights are exported."""

    metric: str = "val/loss"
    mode: str = _choice("min", "min", "max")


@dataclass
class TrainerParams:
    accelerator: str = _choice("cpu", "cpu", "gpu", "cuda", "mps", "auto")
    devices: int = _at_least(1, 1)
    num_nodes: int = _at_least(1, 1)
    strategy: str = _choice("auto", "auto", "ddp", "ddp_spawn", "ddp_notebook", "fsdp")
    precision: str = _choice("32-true", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
    num_workers: int = _at_least(0, 0)
    # Keep the whole uint8 frame store on the accelerator (gathers then never leave the device).
    cache_on_device: bool = False
    channels_last: bool = False
    compile: bool = False


@dataclass
class TrainingParams:
    """The knobs both training stages share (each stage sets its own defaults)."""

    epochs: int = _at_least(12, 1)
    batch_size: int = _at_least(256, 2)
    lr: float = _at_least(5e-4, 0.0, strict=True)
    weight_decay: float = _at_least(0.0, 0.0)  # > 0: AdamW instead of Adam
    grad_clip: float = _at_least(0.0, 0.0)
    seed: int = 0
    early_stopping: EarlyStoppingParams = field(default_factory=EarlyStoppingParams)
    selection: SelectionParams = field(default_factory=SelectionParams)
    trainer: TrainerParams = field(default_factory=TrainerParams)


@dataclass
class VisParams(TrainingParams):
    """Level 0: pretrain the agent's image encoder on frames alone."""

    epochs: int = _at_least(6, 1)
    lr: float = _at_least(1e-3, 0.0, strict=True)
    task: str = _choice("autoencoder", "autoencoder", "vae", "simclr")
    image_normalization: str = _choice("iqn", "iqn", "01")
    latent_dim: int = _at_least(128, 1)
    vae_beta: float = _at_least(1e-3, 0.0)
    simclr_temperature: float = _at_least(0.2, 0.0, strict=True)
    simclr_projection_dim: int = _at_least(64, 1)


@dataclass
class BCParams(TrainingParams):
    """Level 1: behavioral cloning of the driver's action at one or several time offsets."""

    encoder_init: str = _choice("vis", "vis", "none")
    image_normalization: str = _choice("iqn", "iqn", "01")
    target: str = _choice("current_tick", "current_tick", "next_tick")
    time_offsets_ms: list[int] = field(default_factory=lambda: [-10, 0, 10, 100])
    offset_weights: list[float] = field(default_factory=lambda: [0.2, 1.0, 0.5, 0.3])
    export_offset_ms: int = 0
    n_stack: int = _between(1, 1, 16)
    # n_stack > 1: recompute stacked frames' encoder activations in backward, so memory does not grow with n_stack
    checkpoint_stack: bool = True
    use_actions_head: bool = True
    dense_hidden_dimension: int = _at_least(1024, 2)
    dropout: float = _between(0.2, 0.0, 0.95)
    action_head_dropout: float = _between(0.1, 0.0, 0.95)
    use_floats: bool = False
    class_weighting: str = _choice("none", "none", "inverse_frequency")
    epochs: int = _at_least(25, 1)
    weight_decay: float = _at_least(0.01, 0.0)
    # The seed's finding, and this data's: val loss flattens after ~20-25 epochs, so stop when it does.
    early_stopping: EarlyStoppingParams = field(default_factory=lambda: EarlyStoppingParams(enabled=True, patience=8))

    def check(self) -> None:
        """Cross-field rules that no single key can express."""
        offsets, weights = self.time_offsets_ms, self.offset_weights
        if not offsets:
            raise ParamsError("bc.time_offsets_ms", "must list at least one offset (ms)")
        if len(set(offsets)) != len(offsets):
            raise ParamsError("bc.time_offsets_ms", f"offsets must be distinct, got {offsets}")
        if len(weights) != len(offsets):
            raise ParamsError(
                "bc.offset_weights",
                f"has {len(weights)} values but bc.time_offsets_ms has {len(offsets)} ({offsets}): one weight each",
            )
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ParamsError("bc.offset_weights", f"weights must be >= 0 with a positive sum, got {weights}")
        if self.export_offset_ms not in offsets:
            raise ParamsError(
                "bc.export_offset_ms", f"{self.export_offset_ms} is not among bc.time_offsets_ms {offsets}"
            )


@dataclass
class Params:
    synth: SynthParams = field(default_factory=SynthParams)
    data: DataParams = field(default_factory=DataParams)
    vis: VisParams = field(default_factory=VisParams)
    bc: BCParams = field(default_factory=BCParams)


# ------------------------------------------------------------------------------------------- parsing


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value, tp, meta, default=None):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(key, f"expected a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}")
        return _build(tp, value, key, default)
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ParamsError(key, f"expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_tp, {}) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation for {key}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(key, f"expected true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(key, f"expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(key, f"expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            value = str(value)  # YAML reads `01` as 1 and `32-true` fine; accept scalars as their text
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ParamsError(key, f"{value!r} is not allowed; choose one of {', '.join(map(str, choices))}")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and (value < low or (meta.get("strict") and value == low)):
        raise ParamsError(key, f"{value!r} is too small; must be {'>' if meta.get('strict') else '>='} {low}")
    if high is not None and value > high:
        raise ParamsError(key, f"{value!r} is too large; must be <= {high}")
    return value


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _build(cls, raw: dict, prefix: str, base=None):
    """`cls` from the keys in `raw`; keys left out keep `base`'s values (the enclosing group's default for a
    nested group, so `bc: {early_stopping: {patience: 5}}` keeps bc's own early-stopping default otherwise)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)

    def full(name) -> str:
        return f"{prefix}.{name}" if prefix else str(name)

    for name in raw:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f"; did you mean {full(close[0])}?" if close else f"; known keys: {', '.join(fields)}"
            raise ParamsError(full(name), f"unknown key{hint}")
    base = base if base is not None else cls()
    values = {
        name: _coerce(full(name), raw[name], hints[name], fields[name].metadata, getattr(base, name)) for name in raw
    }
    return dataclasses.replace(base, **values)


def _normalise_yaml_scalars(raw: dict) -> dict:
    """YAML reads the normalisation name `01` as the integer 1: restore the string the user meant."""
    for group in ("vis", "bc"):
        if isinstance(raw.get(group), dict) and raw[group].get("image_normalization") in (1, "1"):
            raw[group]["image_normalization"] = "01"
    return raw


def parse_params(raw: dict) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError("<root>", "params.yaml must be a mapping of groups (synth, data, vis, bc)")
    params = _build(Params, _normalise_yaml_scalars(dict(raw)), "")
    params.bc.check()
    return params


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError("<file>", f"{path} not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError("<file>", f"{path} is not valid YAML: {exc}") from None
    return parse_params(raw)


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


def as_dict(obj) -> dict:
    return dataclasses.asdict(obj)
