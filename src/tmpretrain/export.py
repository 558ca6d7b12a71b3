"""Export of encoder.pt / actions_head.pt in the agent's exact layout, their metadata, and verified loading.

The contract: plain dicts of finite float32 CPU tensors, keys without wrapper prefixes, shapes exactly the agent's;
anything else fails loudly (ExportError, one line naming the file) instead of producing or accepting a file that
would load partially. A new export replaces the previous one only once it is complete and verified
(`replace_when_complete`): a run that fails or is killed while exporting leaves the previous export as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from torch import nn

from .actions import N_ACTIONS, action_table
from .errors import ExportError
from .files import NotReadable, read_capped, sha256_file
from .models import (
    FLOAT_FEATURE_DIM,
    FLOAT_INPUT_DIM,
    ActionHead,
    StackFusion,
    build_encoder,
    build_float_feature_extractor,
    encoder_output_dim,
    normalize,
)
from .params import AGENT_DENSE_HIDDEN
from .yamlio import dvc_stages

__all__ = [
    "ENCODER_FILE",
    "ACTIONS_HEAD_FILE",
    "FLOAT_FEATURES_FILE",
    "LINEAR_HEAD_FILE",
    "STACK_FUSION_FILE",
    "META_FILE",
    "LABEL_TIMING_FILE",
    "AGENT_HEAD_HIDDEN",
    "ENCODER_SHAPES",
    "ExportError",
    "action_table",
    "actions_head_shapes",
    "arch_hash",
    "export_actions_head",
    "export_encoder",
    "export_float_features",
    "export_linear_head",
    "export_stack_fusion",
    "git_commit",
    "head_index",
    "load_export",
    "replace_when_complete",
    "sha256_file",
    "strip_prefixes",
    "write_meta",
    "written_aside",
]

ENCODER_FILE = "encoder.pt"
ACTIONS_HEAD_FILE = "actions_head.pt"
FLOAT_FEATURES_FILE = "float_feature_extractor.pt"
# Not the agent's layout, but what the policy needs to run (closed-loop evaluation): the Linear head of a
# bc.use_actions_head: false run (keys weight, bias) and the stack fusion of a bc.n_stack > 1 run (weight, bias).
LINEAR_HEAD_FILE = "linear_head.pt"
STACK_FUSION_FILE = "stack_fusion.pt"
META_FILE = "pretrain_meta.json"
LABEL_TIMING_FILE = "label_timing.json"
AGENT_HEAD_HIDDEN = AGENT_DENSE_HIDDEN // 2  # 512: the agent's A_head hidden width
# Besides the weight files that pretrain_meta.json lists (with their sha256), an export directory holds only these.
UNLISTED_FILES = (META_FILE, LABEL_TIMING_FILE)
MAX_META_BYTES = 16 << 20  # a real pretrain_meta.json is a few KB
_PREFIXES = ("_orig_mod.", "module.", "model.")

ENCODER_SHAPES: dict[str, tuple[int, ...]] = {
    "0.weight": (16, 1, 4, 4),
    "0.bias": (16,),
    "2.weight": (32, 16, 4, 4),
    "2.bias": (32,),
    "4.weight": (64, 32, 3, 3),
    "4.bias": (64,),
    "6.weight": (32, 64, 3, 3),
    "6.bias": (32,),
}
FLOAT_FEATURES_SHAPES: dict[str, tuple[int, ...]] = {
    "0.weight": (FLOAT_FEATURE_DIM, FLOAT_INPUT_DIM),
    "0.bias": (FLOAT_FEATURE_DIM,),
    "2.weight": (FLOAT_FEATURE_DIM, FLOAT_FEATURE_DIM),
    "2.bias": (FLOAT_FEATURE_DIM,),
}


def actions_head_shapes(input_dim: int, hidden: int = AGENT_HEAD_HIDDEN) -> dict[str, tuple[int, ...]]:
    """The agent's A_head shapes for head input width D."""
    return {
        "0.weight": (hidden, input_dim),
        "0.bias": (hidden,),
        "2.weight": (N_ACTIONS, hidden),
        "2.bias": (N_ACTIONS,),
    }


def strip_prefixes(key: str) -> str:
    """Remove leading wrapper prefixes (_orig_mod. from torch.compile, module. from DDP, model.)."""
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def _clean_state(module_or_state: nn.Module | Mapping) -> dict[str, torch.Tensor]:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        out[strip_prefixes(key)] = t.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
    return out


def _check(what: str, state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> None:
    """Exactly the expected keys and shapes, finite values."""
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ExportError(
            f"{what}: keys do not match the agent's layout (missing {missing}, unexpected {extra}); "
            f"expected exactly {list(expected)}"
        )
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise ExportError(f"{what}: {key} has shape {tuple(state[key].shape)}, the agent expects {tuple(shape)}")
    bad = sorted(key for key, t in state.items() if not bool(torch.isfinite(t).all()))
    if bad:
        raise ExportError(f"{what}: {', '.join(bad)} hold NaN or infinite values (a diverged run?)")


def export_encoder(encoder: nn.Module, path) -> dict[str, torch.Tensor]:
    """Save the encoder's 8 tensors (keys 0.weight .. 6.bias, float32, CPU) as a plain dict; returns it."""
    state = _clean_state(encoder)
    _check(f"encoder export to {path}", state, ENCODER_SHAPES)
    torch.save(state, path)
    return state


def export_actions_head(
    head: nn.Module, path, expected_input_dim: int, expected_hidden: int = AGENT_HEAD_HIDDEN
) -> dict[str, torch.Tensor]:
    """Save an A_head-layout head (keys 0.weight 0.bias 2.weight 2.bias); returns the saved dict.

    Raises ExportError when the head is not in the agent's layout, e.g. its input width is not the agent's
    D = expected_input_dim (a head trained without the float slots) or its hidden width is not 512.
    """
    state = _clean_state(head)
    if "0.weight" in state and state["0.weight"].dim() == 2:
        width = state["0.weight"].shape[1]
        if width != expected_input_dim:
            raise ExportError(
                f"actions head export to {path}: head input width is {width} but the agent's A_head expects "
                f"{expected_input_dim}; a partial load is not a success, so nothing was written"
            )
    _check(f"actions head export to {path}", state, actions_head_shapes(expected_input_dim, expected_hidden))
    torch.save(state, path)
    return state


def export_float_features(extractor: nn.Module, path) -> dict[str, torch.Tensor]:
    """Save the agent's float_feature_extractor layout (keys 0.* and 2.*); returns the saved dict."""
    state = _clean_state(extractor)
    _check(f"float feature export to {path}", state, FLOAT_FEATURES_SHAPES)
    torch.save(state, path)
    return state


def linear_head_shapes(input_dim: int) -> dict[str, tuple[int, ...]]:
    return {"weight": (N_ACTIONS, input_dim), "bias": (N_ACTIONS,)}


def stack_fusion_shapes(n_stack: int, feature_dim: int) -> dict[str, tuple[int, ...]]:
    return {"weight": (n_stack, feature_dim), "bias": (feature_dim,)}


def export_linear_head(head: nn.Module, path, input_dim: int) -> dict[str, torch.Tensor]:
    """Save a plain Linear head (bc.use_actions_head: false) on `input_dim` features; returns the saved dict."""
    state = _clean_state(head)
    _check(f"linear head export to {path}", state, linear_head_shapes(input_dim))
    torch.save(state, path)
    return state


def export_stack_fusion(fusion: nn.Module, path, n_stack: int, feature_dim: int) -> dict[str, torch.Tensor]:
    """Save the models.StackFusion that fuses a window's frame features (bc.n_stack > 1): weight (n_stack, F),
    bias (F)."""
    state = _clean_state(fusion)
    _check(f"stack fusion export to {path}", state, stack_fusion_shapes(n_stack, feature_dim))
    torch.save(state, path)
    return state


def head_index(offsets_ms: list[int], export_offset_ms: int) -> int:
    """Index of the head to export, chosen by offset value (never "the first head")."""
    offsets = [int(d) for d in offsets_ms]
    if int(export_offset_ms) not in offsets:
        raise ExportError(f"export offset {export_offset_ms} ms is not among the trained offsets {offsets}")
    return offsets.index(int(export_offset_ms))


# ------------------------------------------------------------------------------------------- hashes, meta


def arch_hash(module: nn.Module | Mapping) -> str:
    """sha256 of the sorted (key, shape) list of a module's (or state dict's) tensors, prefixes stripped."""
    state = module.state_dict() if isinstance(module, nn.Module) else module
    items = sorted((strip_prefixes(k), list(v.shape)) for k, v in state.items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def stage_code_paths(stage: str, dvc_yaml: Path | str = "dvc.yaml") -> tuple[str, ...]:
    """The code an export's revision is taken over: the stage's dependencies under src/ in dvc.yaml, the code DVC
    reruns the stage for. A commit to other code then changes neither the export's bytes nor dvc.lock, so a fresh
    clone's `dvc repro` gives the committed lock. All of src/ where dvc.yaml or the stage is absent or unreadable (a
    run by hand): provenance must never fail an export that has trained."""
    try:
        deps = [d if isinstance(d, str) else next(iter(d)) for d in dvc_stages(dvc_yaml)[stage]["deps"]]
        code = tuple(d for d in deps if d.startswith("src/"))
    except (OSError, ValueError, LookupError, TypeError, AttributeError, StopIteration):
        return ("src",)
    return code or ("src",)


def git_commit(cwd=None, code_paths: tuple[str, ...] = ("src",)) -> str | None:
    """The code revision: the last commit that changed `code_paths` (HEAD where none did), with "-dirty" when they
    have uncommitted changes; None outside git. Pipeline outputs (dvc.lock, metrics) change during every run and
    doc-only commits change nothing that runs, so neither alters what an export records (or its DVC hash); with a
    stage's `stage_code_paths`, neither does a commit to code the stage does not depend on."""
    try:
        run = dict(cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
        commit = subprocess.run(["git", "log", "-1", "--format=%H", "--", *code_paths], **run).stdout.strip()
        commit = commit or subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *code_paths], **run
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not commit:
        return None
    return commit + ("-dirty" if dirty else "")


def write_meta(out_dir, meta: dict) -> dict:
    """Add files {name: {sha256, bytes}} for each .pt in out_dir; write pretrain_meta.json; return the meta."""
    out_dir = Path(out_dir)
    meta = dict(meta)
    meta["files"] = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(out_dir.glob("*.pt"))
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta


# ------------------------------------------------------------------------------------------- verification

_WEIGHT_FILES = (ENCODER_FILE, ACTIONS_HEAD_FILE, FLOAT_FEATURES_FILE, LINEAR_HEAD_FILE, STACK_FUSION_FILE)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class _FileRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Annotated[StrictInt, Field(ge=0)]


# Text a consumer prints (`tmpretrain export inspect`): bounded, so a hostile file cannot flood the terminal.
_Text = Annotated[StrictStr, Field(max_length=200)]
_Offset = Annotated[StrictInt, Field(ge=-10_000, le=10_000)]  # the bounds of bc.time_offsets_ms
_Epoch = Annotated[StrictInt, Field(ge=0, le=100_000)]  # the bound of <group>.epochs


class _Selection(BaseModel):
    model_config = ConfigDict(extra="allow")
    metric: _Text
    mode: Literal["min", "max"]
    epoch: _Epoch
    epochs_run: _Epoch
    value: StrictFloat | StrictInt | None = None


class _RunParams(BaseModel):
    """The run's params that rebuilding its model reads (evaluate's policy): the schema's bounds."""

    model_config = ConfigDict(extra="allow")
    dense_hidden_dimension: Annotated[StrictInt, Field(ge=2, le=65_536)] = AGENT_DENSE_HIDDEN


class _MetaRecord(BaseModel):
    """The keys a consumer relies on (the writers record many more, all kept in the returned meta), with the
    bounds a writer keeps: a consumer may use any of them without checking again."""

    model_config = ConfigDict(extra="allow")
    level: Literal[0, 1]
    image_size: tuple[Annotated[StrictInt, Field(ge=1, le=4096)], Annotated[StrictInt, Field(ge=1, le=4096)]]
    image_normalization: Literal["iqn", "01"]
    files: Annotated[dict[StrictStr, _FileRecord], Field(min_length=1)]
    head_input_dim: Annotated[StrictInt, Field(ge=1, le=1 << 24)] | None = None
    n_stack: Annotated[StrictInt, Field(ge=1, le=64)] = 1
    use_floats: StrictBool = False
    selection: _Selection | None = None
    params: _RunParams = Field(default_factory=_RunParams)
    time_offsets_ms: Annotated[list[_Offset], Field(min_length=1, max_length=20_001)] | None = None  # distinct
    exported_offset_ms: _Offset | None = None
    target: _Text | None = None
    head_layout: _Text | None = None
    normalization_formula: _Text | None = None
    git_commit: _Text | None = None


def _read_meta(out_dir: Path) -> dict:
    meta_path = out_dir / META_FILE
    if not out_dir.exists():
        raise ExportError(f"{out_dir}: not found; is it an export directory (holding {META_FILE})?")
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir}: not a directory; an export is a directory holding {META_FILE}")
    try:
        meta = json.loads(read_capped(meta_path, MAX_META_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{meta_path}: not found; is {out_dir} an export directory?") from None
    except NotReadable as exc:  # a FIFO would hang a plain read, a link to /dev/zero grow until killed
        raise ExportError(f"{meta_path}: {exc}; a {META_FILE} is a few KB") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{meta_path}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{meta_path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ExportError(f"{meta_path}: nested too deeply to be export metadata") from None
    if not isinstance(meta, dict):
        raise ExportError(f"{meta_path}: not a JSON object")
    try:
        _MetaRecord.model_validate(meta)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "<top>"
        value = repr(err.get("input"))
        value = value if len(value) <= 60 else value[:57] + "..."
        raise ExportError(f"{meta_path}: {where}: {err['msg'].lower()} (got {value})") from None
    return meta


def _check_files(out_dir: Path, meta: dict) -> None:
    """The listed names are the agent's weight files, all there, and nothing else is in the directory."""
    meta_path = out_dir / META_FILE
    for name in meta["files"]:
        if not _PLAIN_NAME.fullmatch(name) or any(sep in name for sep in ("/", "\\", os.sep)):
            raise ExportError(f"{meta_path}: file name {name!r} is not a plain file name (no paths, no '..')")
        if name not in _WEIGHT_FILES:
            raise ExportError(f"{meta_path}: lists {name!r}; an export holds only {', '.join(_WEIGHT_FILES)}")
    if ENCODER_FILE not in meta["files"]:
        raise ExportError(f"{meta_path}: lists no {ENCODER_FILE}; every export has the encoder")
    if meta.get("head_input_dim") is not None and ACTIONS_HEAD_FILE not in meta["files"]:
        raise ExportError(f"{meta_path}: records head_input_dim (an A_head) but lists no {ACTIONS_HEAD_FILE}")
    for name in meta["files"]:
        if not (out_dir / name).is_file():
            raise ExportError(f"{out_dir / name}: listed in {META_FILE} but missing")
    for entry in sorted(out_dir.iterdir()):
        if entry.name not in meta["files"] and entry.name not in UNLISTED_FILES:
            kind = "directory" if entry.is_dir() else "file"
            raise ExportError(f"{entry}: unexpected {kind} in the export (not listed in {META_FILE})")


def _load_state(path: Path, record: dict) -> dict[str, torch.Tensor]:
    size = path.stat().st_size
    if size != record["bytes"]:
        raise ExportError(f"{path}: {size} bytes, {META_FILE} records {record['bytes']}")
    digest = sha256_file(path)
    if digest != record["sha256"]:
        raise ExportError(f"{path}: sha256 {digest} does not match {record['sha256']} recorded in {META_FILE}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is an export error
        raise ExportError(f"{path}: cannot be loaded ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ExportError(f"{path}: not a plain dict of tensors")
    bad = sorted(k for k, v in state.items() if v.dtype != torch.float32)
    if bad:
        raise ExportError(f"{path}: tensors {bad} are not float32")
    return state


def load_export(out_dir) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """Read pretrain_meta.json and every file it lists, verifying the directory, sizes, sha256 and the agent's
    shapes; any problem is one ExportError naming the file.

    Returns (meta, {file name: state dict}). encoder.pt must have the img_head shapes; actions_head.pt (present
    with bc.use_actions_head) the A_head shapes for D = encoder_output_dim(image size) + 256, equal to
    meta["head_input_dim"]; float_feature_extractor.pt the agent's float_feature_extractor shapes; linear_head.pt
    (bc.use_actions_head: false) Linear(F [+ 256 with floats], 12); stack_fusion.pt (bc.n_stack > 1)
    models.StackFusion(n_stack, F). Every tensor must be finite float32.
    """
    out_dir = Path(out_dir)
    meta = _read_meta(out_dir)
    _check_files(out_dir, meta)
    states: dict[str, dict[str, torch.Tensor]] = {}
    for name, record in meta["files"].items():
        path = out_dir / name
        state = _load_state(path, record)
        if name == ENCODER_FILE:
            expected = ENCODER_SHAPES
        elif name == FLOAT_FEATURES_FILE:
            expected = FLOAT_FEATURES_SHAPES
        else:
            height, width = meta["image_size"]
            try:
                feature_dim = encoder_output_dim(height, width)
            except ValueError as exc:
                raise ExportError(f"{out_dir / META_FILE}: image_size {height}x{width}: {exc}") from None
            input_dim = feature_dim + FLOAT_FEATURE_DIM
        if name == STACK_FUSION_FILE:
            expected = stack_fusion_shapes(meta.get("n_stack", 1), feature_dim)
        elif name == LINEAR_HEAD_FILE:
            expected = linear_head_shapes(feature_dim + (FLOAT_FEATURE_DIM if meta.get("use_floats") else 0))
        elif name == ACTIONS_HEAD_FILE:
            recorded = meta.get("head_input_dim")
            if recorded is not None and recorded != input_dim:
                raise ExportError(
                    f"{path}: {META_FILE} records head_input_dim {recorded} but image size {height}x{width} "
                    f"gives the agent's D = {input_dim}"
                )
            expected = actions_head_shapes(input_dim)
        _check(str(path), state, expected)
        states[name] = state
    _probe_forward(out_dir, meta, states)
    return meta, states


def _probe_forward(out_dir: Path, meta: dict, states: dict[str, dict[str, torch.Tensor]]) -> None:
    """Every exported part, in the order the policy runs them, on a probe at the edge of the input range (white
    frames, floats of 1) must give finite outputs: weights of 1e30 are finite and pass every other check, yet
    overflow to inf in the first layers that sum them (and crash evaluation). An ExportError names the part."""
    height, width = meta["image_size"]
    n_stack = meta.get("n_stack", 1)
    frames = normalize(torch.full((n_stack, 1, height, width), 255.0), meta["image_normalization"])
    with torch.no_grad():
        x = _probe(out_dir, ENCODER_FILE, build_encoder(), states, frames).reshape(1, -1)
        if STACK_FUSION_FILE in states:
            fusion = StackFusion(n_stack, x.shape[1] // n_stack)
            x = _probe(out_dir, STACK_FUSION_FILE, fusion, states, x)
        if FLOAT_FEATURES_FILE in states:
            floats = torch.ones(1, FLOAT_INPUT_DIM)
            x = torch.cat([x, _probe(out_dir, FLOAT_FEATURES_FILE, build_float_feature_extractor(), states, floats)], 1)
        elif ACTIONS_HEAD_FILE in states:  # the agent's A_head always takes the 256 float slots (zeros here)
            x = torch.cat([x, x.new_zeros(1, FLOAT_FEATURE_DIM)], 1)
        if ACTIONS_HEAD_FILE in states:
            hidden = 2 * states[ACTIONS_HEAD_FILE]["0.weight"].shape[0]
            _probe(out_dir, ACTIONS_HEAD_FILE, ActionHead(x.shape[1], hidden), states, x)
        if LINEAR_HEAD_FILE in states:
            _probe(out_dir, LINEAR_HEAD_FILE, nn.Linear(x.shape[1], N_ACTIONS), states, x)


def _probe(out_dir: Path, name: str, module: nn.Module, states: dict, x: torch.Tensor) -> torch.Tensor:
    module.load_state_dict(states[name], strict=True)
    out = module.eval()(x)
    if not torch.isfinite(out).all():
        largest = max(float(t.abs().max()) for t in states[name].values())
        raise ExportError(
            f"{out_dir / name}: a probe frame gives non-finite outputs (largest weight {largest:.3g}): the weights "
            "overflow; export again from a run that did not diverge"
        )
    return out


# ------------------------------------------------------------------------------------------- replacing


def written_aside(folder) -> Path:
    """Where a new version of `folder` is written before it takes its place: a hidden sibling."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.partial")


@contextmanager
def replace_when_complete(out_dir, *together) -> Iterator[Path]:
    """Write a new export into the yielded sibling directory; on success it is verified with `load_export` and
    takes the place of `out_dir`. On an exception (or a kill) `out_dir` keeps the previous export untouched.

    `together`: folders of the same run already written aside (`written_aside(folder)`: the run's reports), put in
    place right after the export, or removed with it on failure: the export and its reports are always one run's.

        with replace_when_complete("models/bc") as staging:
            export_encoder(encoder, staging / ENCODER_FILE)
            write_meta(staging, meta)
    """
    out_dir = Path(out_dir)
    staging = written_aside(out_dir)
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
    staging.mkdir(parents=True)
    try:
        yield staging
        load_export(staging)  # what we wrote must pass the same verification a consumer runs
        for new, folder in [(staging, out_dir), *((written_aside(f), Path(f)) for f in together)]:
            _swap_in(new, folder)
    finally:
        for leftover in [staging, *map(written_aside, together)]:
            shutil.rmtree(leftover, ignore_errors=True)


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Put `staging` in the place of `out_dir` with directory renames (no directory is ever half old, half new).
    Windows cannot rename a directory while a program holds a file in it open: then the files move one by one
    (os.replace, atomic per file) and the ones the new export lacks are removed."""
    previous = out_dir.with_name(f".{out_dir.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    try:
        if out_dir.exists():
            os.replace(out_dir, previous)
        try:
            os.replace(staging, out_dir)
        except OSError:
            if previous.exists() and not out_dir.exists():
                os.replace(previous, out_dir)  # put the previous export back before the fallback
            raise
    except OSError:
        out_dir.mkdir(parents=True, exist_ok=True)
        new = {p.name for p in staging.iterdir()}
        for name in sorted(new):
            os.replace(staging / name, out_dir / name)
        for stale in out_dir.iterdir():
            if stale.name not in new:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    shutil.rmtree(previous, ignore_errors=True)
