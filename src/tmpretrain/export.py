"""Export of encoder.pt / actions_head.pt in the agent's exact layout, their metadata, and verified loading.

The contract: plain dicts of float32 CPU tensors, keys without wrapper prefixes, shapes exactly the agent's;
anything else fails loudly (ExportError) instead of producing a file that would load partially.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .actions import N_ACTIONS, action_table
from .errors import PretrainError
from .models import FLOAT_FEATURE_DIM, encoder_output_dim

__all__ = [
    "ENCODER_FILE",
    "ACTIONS_HEAD_FILE",
    "META_FILE",
    "AGENT_HEAD_HIDDEN",
    "ENCODER_SHAPES",
    "ExportError",
    "action_table",
    "actions_head_shapes",
    "arch_hash",
    "export_actions_head",
    "export_encoder",
    "git_commit",
    "head_index",
    "load_export",
    "sha256_file",
    "strip_prefixes",
    "write_meta",
]

ENCODER_FILE = "encoder.pt"
ACTIONS_HEAD_FILE = "actions_head.pt"
META_FILE = "pretrain_meta.json"
AGENT_HEAD_HIDDEN = 512  # the agent's dense_hidden_dimension 1024 // 2
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


class ExportError(PretrainError):
    """An export that would not load strictly into the agent, or an export directory failing verification."""


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
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ExportError(
            f"{what}: keys do not match the agent's layout (missing {missing}, unexpected {extra}); "
            f"expected exactly {list(expected)}"
        )
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise ExportError(f"{what}: {key} has shape {tuple(state[key].shape)}, the agent expects {tuple(shape)}")


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


def head_index(offsets_ms: list[int], export_offset_ms: int) -> int:
    """Index of the head to export, chosen by offset value (never "the first head")."""
    offsets = [int(d) for d in offsets_ms]
    if int(export_offset_ms) not in offsets:
        raise ExportError(f"export offset {export_offset_ms} ms is not among the trained offsets {offsets}")
    return offsets.index(int(export_offset_ms))


# ------------------------------------------------------------------------------------------- hashes, meta


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def arch_hash(module: nn.Module | Mapping) -> str:
    """sha256 of the sorted (key, shape) list of a module's (or state dict's) tensors, prefixes stripped."""
    state = module.state_dict() if isinstance(module, nn.Module) else module
    items = sorted((strip_prefixes(k), list(v.shape)) for k, v in state.items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def git_commit(cwd=None, code_paths: tuple[str, ...] = ("src",)) -> str | None:
    """The code revision: the last commit that changed `code_paths` (HEAD where none did), with "-dirty" when they
    have uncommitted changes; None outside git. Pipeline outputs (dvc.lock, metrics) change during every run and
    doc-only commits change nothing that runs, so neither alters what an export records (or its DVC hash)."""
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


def _image_hw(meta: dict) -> tuple[int, int] | None:
    """The image size in the metadata: image_size [H, W] or {height, width}, or image_height + image_width."""
    size = meta.get("image_size")
    if isinstance(size, dict) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if isinstance(size, list | tuple) and len(size) == 2:
        return int(size[0]), int(size[1])
    if "image_height" in meta and "image_width" in meta:
        return int(meta["image_height"]), int(meta["image_width"])
    return None


def load_export(out_dir) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """Read pretrain_meta.json and every file it lists, verifying sha256 and the agent's shapes.

    Returns (meta, {file name: state dict}). encoder.pt must have the img_head shapes; actions_head.pt must
    have the A_head shapes for D = encoder_output_dim(image size) + 256 (and meta["head_input_dim"] if
    recorded). Every tensor must be float32.
    """
    out_dir = Path(out_dir)
    meta_path = out_dir / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{meta_path}: not found; is {out_dir} an export directory?") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{meta_path}: not valid JSON ({exc})") from None
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ExportError(f"{meta_path}: lists no files")
    states: dict[str, dict[str, torch.Tensor]] = {}
    for name, info in files.items():
        path = out_dir / name
        if not path.is_file():
            raise ExportError(f"{path}: listed in {META_FILE} but missing")
        digest = sha256_file(path)
        if digest != info.get("sha256"):
            raise ExportError(f"{path}: sha256 {digest} does not match {info.get('sha256')} recorded in {META_FILE}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file is an export error
            raise ExportError(f"{path}: cannot be loaded ({exc})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ExportError(f"{path}: not a plain dict of tensors")
        bad = sorted(k for k, v in state.items() if v.dtype != torch.float32)
        if bad:
            raise ExportError(f"{path}: tensors {bad} are not float32")
        if name == ENCODER_FILE:
            _check(str(path), state, ENCODER_SHAPES)
        elif name == ACTIONS_HEAD_FILE:
            hw = _image_hw(meta)
            if hw is None:
                raise ExportError(f"{path}: {META_FILE} records no image size, so the head width cannot be checked")
            expected = encoder_output_dim(*hw) + FLOAT_FEATURE_DIM
            recorded = meta.get("head_input_dim")
            if recorded is not None and int(recorded) != expected:
                raise ExportError(
                    f"{path}: {META_FILE} records head_input_dim {recorded} but image size {hw[0]}x{hw[1]} "
                    f"gives the agent's D = {expected}"
                )
            _check(str(path), state, actions_head_shapes(expected))
        states[name] = state
    return meta, states
