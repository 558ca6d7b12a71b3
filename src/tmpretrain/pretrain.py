"""The two training runs, end to end: check params, open the frame store, train, export the selected epoch.

Stages call `run_vis` / `run_bc`; tests call them on tiny stores. Outputs go to `out_dir` (the DVC-versioned
model directory) and `live_dir` (DVCLive metrics and plots).
"""

from __future__ import annotations

import difflib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import torch

from .actions import MAIN_ACTIONS, N_ACTIONS, action_table
from .cache import FrameStore
from .datamodule import FrameDataModule
from .errors import ParamsError
from .export import (
    ACTIONS_HEAD_FILE,
    AGENT_HEAD_HIDDEN,
    ENCODER_FILE,
    arch_hash,
    export_actions_head,
    export_encoder,
    git_commit,
    load_export,
    write_meta,
)
from .metrics import epoch_metrics, offset_label
from .models import VISION_TASK_METRICS, BCModel, encoder_output_dim
from .params import BCParams, VisParams
from .training import BCModule, EpochLogger, VisModule, build_trainer, inverse_frequency_weights
from .windows import Samples, build_samples, label_timing_report

BC_HEADLINE = [
    "train/loss",
    "val/loss",
    "train/acc",
    "val/acc",
    "val/main_actions_acc",
    "val/balanced_acc",
    "val/macro_f1",
]
VIS_HEADLINE = ["train/loss", "val/loss", "val/acc"]


def check_image_size(store: FrameStore, key: str) -> None:
    try:
        encoder_output_dim(*store.image_hw)
    except ValueError as exc:
        raise ParamsError(key, f"cached frames are {store.image_hw[0]}x{store.image_hw[1]}: {exc}") from None


def check_metric_names(group: str, params, names: set[str]) -> None:
    """selection.metric must be a metric the run logs, early_stopping.monitor a val metric: checked before the
    old outputs are cleared, instead of a KeyError (or Lightning's RuntimeError) after the first epoch."""
    rules = [(f"{group}.selection.metric", params.selection.metric, names)]
    if params.early_stopping.enabled:  # Lightning sees the metrics logged at the end of validation only
        rules.append(
            (
                f"{group}.early_stopping.monitor",
                params.early_stopping.monitor,
                {n for n in names if n.startswith("val/")},
            )
        )
    for key, metric, allowed in rules:
        if metric not in allowed:
            close = difflib.get_close_matches(metric, sorted(allowed), n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else f"for example {', '.join(sorted(allowed)[:6])}"
            raise ParamsError(key, f"{metric!r} is not a metric of this run; {hint}")


def bc_metric_names(params: BCParams) -> set[str]:
    zero = [torch.zeros(N_ACTIONS, N_ACTIONS, dtype=torch.long)] * len(params.time_offsets_ms)
    names = {"train/lr"}
    for split in ("train", "val"):
        names |= set(epoch_metrics(split, 0.0, zero, params.time_offsets_ms, params.export_offset_ms))
    return names


def vis_metric_names(params: VisParams) -> set[str]:
    return {"train/lr"} | {f"{s}/{k}" for s in ("train", "val") for k in ("loss", *VISION_TASK_METRICS[params.task])}


def export_summary(stage: str, result: dict, out_dir: Path) -> str | None:
    """The stage's closing line; None on DDP ranks other than 0, which export nothing."""
    if not result["exported"]:
        return None
    sel = result["selected"]
    return (
        f"{stage}: exported epoch {sel.epoch} of {len(result['history'])} ({sel.metric} {sel.value:.4f}) to {out_dir}"
    )


def _prepare(out_dir: Path, live_dir: Path, seed: int) -> None:
    # Stale files from an earlier run must never ride along with this one's results.
    for d in (out_dir, live_dir):
        shutil.rmtree(d, ignore_errors=True)
    out_dir.mkdir(parents=True)
    L.seed_everything(seed, workers=True, verbose=False)


def _fit(module, data: FrameDataModule, params, live_dir: Path, headline: list[str]) -> EpochLogger:
    logger = EpochLogger(live_dir, params.selection, headline)
    trainer = build_trainer(params.trainer, params.epochs, params.grad_clip, params.early_stopping, logger)
    if params.trainer.compile:
        module.model = torch.compile(module.model)
    trainer.fit(module, datamodule=data)
    if logger.selected.epoch < 0:
        raise ParamsError(
            f"{type(params).__name__.removesuffix('Params').lower()}.selection.metric",
            f"{logger.selected.metric} was never finite; nothing to export",
        )
    return logger


def _common_meta(store: FrameStore, params, selected, history_len: int) -> dict:
    return {
        "image_size": list(store.image_hw),
        "image_normalization": params.image_normalization,
        "normalization_formula": "(x - 128) / 128" if params.image_normalization == "iqn" else "x / 255",
        "selection": {
            "metric": selected.metric,
            "mode": selected.mode,
            "epoch": selected.epoch,
            "value": selected.value,
            "epochs_run": history_len,
        },
        "data": {
            "cache_content_hash": store.content_hash,
            "cache_preprocessing": store.meta["preprocessing"],
            "split": {k: store.meta["split"][k] for k in ("seed", "val_fraction", "val_tracks")},
        },
        "git_commit": git_commit(),
        "params": asdict(params),
    }


# ------------------------------------------------------------------------------------------ Level 0


def frame_samples(store: FrameStore, split: str) -> Samples:
    """Level 0 uses every frame of the split once (no labels needed)."""
    rows = np.concatenate(
        [
            np.arange(store.replay_frame_start[r], store.replay_frame_start[r] + store.replay_frame_count[r])
            for r in store.replay_ids(split)
        ]
    )
    return Samples(
        rows[:, None],
        np.zeros((len(rows), 1), dtype=np.int64),
        store.frame_replay[rows],
        store.frame_time_ms[rows],
        np.zeros(len(rows), dtype=bool),
    )


def run_vis(params: VisParams, cache_dir: Path, out_dir: Path, live_dir: Path) -> dict:
    store = FrameStore.open(cache_dir)
    check_image_size(store, "data.image_height / data.image_width")
    check_metric_names("vis", params, vis_metric_names(params))
    _prepare(out_dir, live_dir, params.seed)
    data = FrameDataModule(
        store,
        frame_samples(store, "train"),
        frame_samples(store, "val"),
        params.batch_size,
        params.seed,
        params.trainer.num_workers,
        cache_on_device=params.trainer.cache_on_device,
    )
    module = VisModule(params, store.image_hw)
    logger = _fit(module, data, params, live_dir, VIS_HEADLINE)
    if not logger.is_global_zero:  # DDP: rank 0 alone writes the export (all ranks hold the same weights)
        return {"selected": logger.selected, "history": logger.history, "exported": False}
    module.model.load_state_dict(logger.selected.state_dict)
    export_encoder(module.model.encoder, out_dir / ENCODER_FILE)
    meta = {
        "level": 0,
        "task": params.task,
        "n_stack": 1,
        "encoder_arch_hash": arch_hash(module.model.encoder),
        **_common_meta(store, params, logger.selected, len(logger.history)),
    }
    write_meta(out_dir, meta)
    load_export(out_dir)  # what we wrote must pass the same verification a consumer runs
    return {"selected": logger.selected, "history": logger.history, "exported": True}


# ------------------------------------------------------------------------------------------ Level 1


def check_bc_params(params: BCParams, store: FrameStore, encoder_init_path: Path) -> None:
    """Everything that would make a BC run fail or export nothing usable, before any training starts."""
    params.check()
    check_image_size(store, "data.image_height / data.image_width")
    check_metric_names("bc", params, bc_metric_names(params))
    if params.use_actions_head and params.dense_hidden_dimension // 2 != AGENT_HEAD_HIDDEN:
        raise ParamsError(
            "bc.dense_hidden_dimension",
            f"{params.dense_hidden_dimension} gives an A_head hidden width "
            f"of {params.dense_hidden_dimension // 2}; the agent's is {AGENT_HEAD_HIDDEN} (use 1024)",
        )
    if params.use_floats and store.floats is None:
        raise ParamsError(
            "bc.use_floats", "the cache has no float inputs; set data.include_floats: true and re-run ingest"
        )
    if params.encoder_init == "vis" and not (encoder_init_path / ENCODER_FILE).is_file():
        raise ParamsError(
            "bc.encoder_init",
            f"'vis' needs {encoder_init_path / ENCODER_FILE}; run pretrain_vis first or set bc.encoder_init: none",
        )
    if params.trainer.cache_on_device and params.use_floats:
        raise ParamsError("bc.trainer.cache_on_device", "is not supported together with bc.use_floats")


def run_bc(
    params: BCParams, cache_dir: Path, out_dir: Path, live_dir: Path, encoder_init_path: Path = Path("models/vis")
) -> dict:
    store = FrameStore.open(cache_dir)
    check_bc_params(params, store, encoder_init_path)
    _prepare(out_dir, live_dir, params.seed)
    offsets = params.time_offsets_ms
    train = build_samples(store, "train", params.n_stack, offsets, params.target)
    val = build_samples(store, "val", params.n_stack, offsets, params.target)
    weights = inverse_frequency_weights(train.labels) if params.class_weighting == "inverse_frequency" else None
    data = FrameDataModule(
        store,
        train,
        val,
        params.batch_size,
        params.seed,
        params.trainer.num_workers,
        params.use_floats,
        params.trainer.cache_on_device,
    )
    module = BCModule(params, store.image_hw, weights)
    init_meta = None
    if params.encoder_init == "vis":
        init_meta, states = load_export(encoder_init_path)
        if init_meta.get("image_size") != list(store.image_hw):
            raise ParamsError(
                "bc.encoder_init",
                f"{encoder_init_path} was trained on {init_meta.get('image_size')} "
                f"frames, the cache holds {list(store.image_hw)}",
            )
        module.model.encoder.load_state_dict(states[ENCODER_FILE], strict=True)

    logger = _fit(
        module,
        data,
        params,
        live_dir,
        BC_HEADLINE + [f"val/acc_offset/{offset_label(d)}" for d in offsets if len(offsets) > 1],
    )
    if not logger.is_global_zero:  # DDP: rank 0 alone writes the export (all ranks hold the same weights)
        return {"selected": logger.selected, "history": logger.history, "timing": None, "exported": False}
    model: BCModel = module.model
    model.load_state_dict(logger.selected.state_dict)
    export_encoder(model.encoder, out_dir / ENCODER_FILE)
    head = module.export_head
    if params.use_actions_head:
        export_actions_head(model.heads[head], out_dir / ACTIONS_HEAD_FILE, model.head_input_dim)
    if params.use_floats:
        torch.save(
            {k: v.float().contiguous() for k, v in model.float_feature_extractor.state_dict().items()},
            out_dir / "float_feature_extractor.pt",
        )
    timing = label_timing_report(store, val, offsets, params.target)
    (out_dir / "label_timing.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    meta = {
        "level": 1,
        "actions": action_table(),
        "main_actions": list(MAIN_ACTIONS),
        "target": params.target,
        "time_offsets_ms": offsets,
        "offset_weights": params.offset_weights,
        "exported_offset_ms": params.export_offset_ms,
        "exported_head_index": head,
        "n_stack": params.n_stack,
        "head_input": "stack_fused" if params.n_stack > 1 else "img_head",
        "head_layout": "A_head" if params.use_actions_head else "linear (not exported: not the agent's layout)",
        "head_input_dim": model.head_input_dim if params.use_actions_head else None,
        "use_floats": params.use_floats,
        "encoder_init": params.encoder_init,
        "encoder_init_meta": {"selection": init_meta.get("selection"), "task": init_meta.get("task")}
        if init_meta
        else None,
        "encoder_arch_hash": arch_hash(model.encoder),
        "model_arch_hash": arch_hash(model),
        "label_fallback_replays": store.meta["label_fallback_replays"],
        **_common_meta(store, params, logger.selected, len(logger.history)),
    }
    write_meta(out_dir, meta)
    load_export(out_dir)
    return {"selected": logger.selected, "history": logger.history, "timing": timing, "exported": True}
