"""The two training runs, end to end: check params, open the frame store, train, export the selected epoch.

Stages call `run_vis` / `run_bc`; tests call them on tiny stores. Outputs go to `out_dir` (the DVC-versioned
model directory) and `live_dir` (DVCLive metrics and plots), both written aside and put in place together at the
end: until then the previous run's export and reports stay as they were. With a `checkpoint_dir` (the stages': under
CHECKPOINT_ROOT, outside every DVC output, which DVC deletes before a rerun) each finished epoch is checkpointed,
a rerun with the same params, data and code resumes from the last one, and a finished run removes it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image

from .actions import ACTION_NAMES, MAIN_ACTIONS, N_ACTIONS, action_table
from .cpu_math import kernel_summary
from .datamodule import FrameDataModule
from .errors import DataError, ParamsError, PretrainError
from .export import (
    ACTIONS_HEAD_FILE,
    ENCODER_FILE,
    FLOAT_FEATURES_FILE,
    LABEL_TIMING_FILE,
    LINEAR_HEAD_FILE,
    STACK_FUSION_FILE,
    arch_hash,
    export_actions_head,
    export_encoder,
    export_float_features,
    export_linear_head,
    export_stack_fusion,
    git_commit,
    load_export,
    replace_when_complete,
    sha256_file,
    stage_code_paths,
    write_meta,
    written_aside,
)
from .files import free_for_writing, shown
from .frame_store import FrameStore
from .metrics import epoch_metrics, offset_label
from .models import VISION_TASK_METRICS, BCModel, VisionModel, denormalize, encoder_output_dim, normalize
from .params import BCParams, VisParams, as_dict, set_nested
from .trainer import (
    BCModule,
    EpochCheckpoint,
    EpochSelector,
    VisModule,
    build_trainer,
    device_summary,
    inverse_frequency_weights,
)
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
# The one line per epoch (with the selection metric where it is another); metrics.json and the plots have the rest.
CONSOLE = ["train/loss", "val/loss", "val/acc"]
CHECKPOINT_ROOT = Path(".tmpretrain/checkpoints")


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


def export_summary(stage: str, result: dict, out_dir: Path) -> list[str]:
    """The stage's closing lines: the files, the epoch and the rule that chose it, the exported offset's head; a line
    starting with "warning:" when no agent head was exported. Empty on DDP ranks other than 0 (they export nothing)."""
    if not result["exported"]:
        return []
    meta = result["meta"]
    sel = meta["selection"]
    rule = f"{'lowest' if sel['mode'] == 'min' else 'highest'} {sel['metric']}"
    files = ", ".join(sorted(p.name for p in Path(out_dir).iterdir()))
    epochs = meta["params"]["epochs"]
    stopped = f"; early stopping after {sel['epochs_run']} of {epochs}" if sel["epochs_run"] < epochs else ""
    lines = [
        f"{stage}: exported epoch {sel['epoch']} of {sel['epochs_run']} run ({rule}: {sel['value']:.4f}{stopped}) "
        f"to {out_dir}: {files}"
    ]
    if meta["level"] == 1:
        offsets = ", ".join(offset_label(d) for d in meta["time_offsets_ms"])
        head = f"offset {offset_label(meta['exported_offset_ms'])} (head {meta['exported_head_index']} of {offsets})"
        if ACTIONS_HEAD_FILE in meta["files"]:
            lines.append(f"  {ACTIONS_HEAD_FILE}: the A_head of {head}, input {meta['head_input']}")
        else:
            lines.append(
                f"warning: no agent head exported: bc.use_actions_head is false, so the heads ({head}) are single "
                f"Linear layers, not the agent's A_head; only {ENCODER_FILE} transfers "
                f"(bc.use_actions_head: true exports {ACTIONS_HEAD_FILE})"
            )
    return lines


def print_export_summary(stage: str, result: dict, out_dir: Path) -> None:
    for line in export_summary(stage, result, out_dir):
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout, flush=True)


def checkpoint_key(params, store: FrameStore, *inputs: Path) -> str:
    """What a resume checkpoint belongs to: the stage's params, the frame store, the code (this package's modules,
    the torch and Lightning versions) and input files (the Level 0 encoder a BC run starts from)."""
    digest = hashlib.sha256()
    about = {"params": as_dict(params), "cache": store.content_hash, "torch": torch.__version__, "L": L.__version__}
    digest.update(json.dumps(about, sort_keys=True).encode())
    package = Path(__file__).parent
    for module in sorted(package.rglob("*.py")):
        digest.update(module.relative_to(package).as_posix().encode() + b"\0" + module.read_bytes())
    for path in inputs:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _epoch_checkpoint(directory: Path | None, key: str, stage: str) -> EpochCheckpoint | None:
    """The run's checkpoint callback; a checkpoint left by a run with another key is removed first."""
    if directory is None:
        return None
    key_file = directory / "key"
    if directory.exists() and (not key_file.is_file() or key_file.read_text() != key):
        if (directory / EpochCheckpoint.FILE).is_file():
            print(f"{stage}: {directory} holds an interrupted run with other params, data or code; starting afresh")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    return EpochCheckpoint(directory)


def _prepare(live_dir: Path, seed: int) -> Path:
    """Where this run writes its reports: aside, put in the place of `live_dir` together with the export
    (export.replace_when_complete), so that an interrupted or failed run leaves the previous export beside its own
    reports. Stale files of an earlier attempt never ride along with this run's results."""
    reports = written_aside(live_dir)
    shutil.rmtree(reports, ignore_errors=True)  # made again by DVCLive, once check_output_room has passed
    L.seed_everything(seed, workers=True, verbose=False)
    return reports


# DVCLive's files of one run (per-epoch TSVs, metrics.json, the confusion matrix, Level 0's reconstructions) and an
# export's metadata: a few hundred kB for long runs; generously.
REPORTS_BYTES = 16 * 2**20
META_BYTES = 2**20


def check_output_room(
    model: torch.nn.Module, out_dir: Path, live_dir: Path, checkpoint: EpochCheckpoint | None
) -> None:
    """Before training: the folders that take the export, the reports and the resume checkpoint accept a write, and
    their disks have room (estimates from the model's float32 parameters: the export holds at most all of them, a
    checkpoint the weights, the selected epoch's and Adam's two moments), so that a read-only or full models/ or
    reports/ is one error with the previous outputs as they were, not a traceback after training."""
    weights = 4 * sum(p.numel() for p in model.parameters())
    wanted = [("export", out_dir.parent, weights + META_BYTES), ("reports", live_dir.parent, REPORTS_BYTES)]
    if checkpoint is not None:
        wanted.append(("resume checkpoint", checkpoint.directory, 4 * weights))
    needed_per_disk: dict[int, int] = {}
    for what, folder, size in wanted:
        try:
            free = free_for_writing(folder)
        except OSError as exc:
            raise PretrainError(
                f"{folder}: cannot write the {what} there ({exc.strerror or exc}); nothing was changed"
            ) from None
        disk = folder.stat().st_dev
        needed_per_disk[disk] = needed_per_disk.get(disk, 0) + size
        if needed_per_disk[disk] > free:
            raise PretrainError(
                f"{folder}: not enough disk space: this run's outputs need about {needed_per_disk[disk] / 1e6:.0f} MB "
                f"on this disk, {free / 1e6:.0f} MB free; free some and run again; nothing was changed"
            )


def _fit(
    module, data: FrameDataModule, params, live_dir: Path, headline: list[str], checkpoint: EpochCheckpoint | None
) -> EpochSelector:
    group = type(params).__name__.removesuffix("Params").lower()
    selector = EpochSelector(live_dir, params.selection, headline, CONSOLE)
    trainer = build_trainer(
        params.trainer, params.epochs, params.grad_clip, params.early_stopping, selector, checkpoint
    )
    if trainer.is_global_zero:
        print(
            f"pretrain_{group}: {device_summary(trainer, params.trainer.accelerator)}; "
            f"{len(data.train)} train / {len(data.val)} val samples",
            flush=True,
        )
    if params.trainer.compile:
        module.model = torch.compile(module.model)
    resume = checkpoint.resumable() if checkpoint is not None else None
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    if selector.selected.epoch < 0:
        raise ParamsError(
            f"{group}.selection.metric",
            f"{selector.selected.metric} was never finite; nothing to export",
        )
    return selector


def _finished(checkpoint: EpochCheckpoint | None) -> None:
    # The export is complete and verified: nothing is left to resume.
    if checkpoint is not None:
        shutil.rmtree(checkpoint.directory, ignore_errors=True)


def _common_meta(store: FrameStore, params, selected, history_len: int, stage: str) -> dict:
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
            "split": {k: v for k, v in store.meta["split"].items() if k != "train_tracks"},
        },
        "git_commit": git_commit(code_paths=stage_code_paths(stage)),
        "params": as_dict(params),
        "cpu_math": kernel_summary(),
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


RECONSTRUCTIONS_FILE = "reconstructions.png"


def write_reconstructions(model: VisionModel, store: FrameStore, normalization: str, path: Path, n: int = 8) -> None:
    """n val frames, evenly spread over the val split (top row) above the selected epoch's reconstructions."""
    ids = np.concatenate(
        [
            np.arange(store.replay_frame_start[r], store.replay_frame_start[r] + store.replay_frame_count[r])
            for r in store.replay_ids("val")
        ]
    )
    frames = torch.from_numpy(np.asarray(store.frames[ids[np.linspace(0, len(ids) - 1, n).astype(int)]]))
    device = next(model.parameters()).device
    recon = model.eval().reconstruct(normalize(frames[:, None].to(device), normalization)).cpu()
    grid = torch.cat([torch.cat(list(frames), dim=1), torch.cat(list(denormalize(recon[:, 0], normalization)), dim=1)])
    Image.fromarray(grid.numpy(), mode="L").resize(
        (grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST
    ).save(path)


def run_vis(
    params: VisParams, cache_dir: Path, out_dir: Path, live_dir: Path, checkpoint_dir: Path | None = None
) -> dict:
    store = FrameStore.open(cache_dir)
    check_image_size(store, "data.image_height / data.image_width")
    check_metric_names("vis", params, vis_metric_names(params))
    checkpoint = _epoch_checkpoint(checkpoint_dir, checkpoint_key(params, store), "pretrain_vis")
    reports = _prepare(live_dir, params.seed)
    data = FrameDataModule(
        store,
        frame_samples(store, "train"),
        frame_samples(store, "val"),
        params.batch_size,
        params.seed,
        params.trainer.num_workers,
        cache_on_device=params.trainer.cache_on_device,
    )
    module = VisModule(params=params, image_hw=store.image_hw)
    check_output_room(module.model, out_dir, live_dir, checkpoint)
    selector = _fit(module, data, params, reports, VIS_HEADLINE, checkpoint)
    if not selector.is_global_zero:  # DDP: rank 0 alone writes the export (all ranks hold the same weights)
        return {"selected": selector.selected, "history": selector.history, "exported": False}
    module.model.load_state_dict(selector.selected.state_dict)
    samples = reports / "samples"  # a DVC out whatever the task: empty for simclr (no decoder)
    samples.mkdir(parents=True, exist_ok=True)
    if params.task in ("autoencoder", "vae"):
        write_reconstructions(module.model, store, params.image_normalization, samples / RECONSTRUCTIONS_FILE)
    with replace_when_complete(out_dir, live_dir) as staging:  # verified, then in place of the previous ones
        export_encoder(module.model.encoder, staging / ENCODER_FILE)
        meta = {
            "level": 0,
            "task": params.task,
            "n_stack": 1,
            "encoder_arch_hash": arch_hash(module.model.encoder),
            **_common_meta(store, params, selector.selected, len(selector.history), "pretrain_vis"),
        }
        meta = write_meta(staging, meta)
    _finished(checkpoint)
    return {"selected": selector.selected, "history": selector.history, "exported": True, "meta": meta}


# ------------------------------------------------------------------------------------------ Level 1


def check_bc_params(params: BCParams, store: FrameStore, encoder_init_path: Path) -> None:
    """What the params schema cannot know (the cache, the files on disk), before any training starts: the rules
    between params alone (A_head width, offsets) were checked when BCParams was built."""
    check_image_size(store, "data.image_height / data.image_width")
    check_metric_names("bc", params, bc_metric_names(params))
    if params.use_floats and store.floats is None:
        raise ParamsError(
            "bc.use_floats", "the cache has no float inputs; set data.include_floats: true and re-run ingest"
        )
    if params.encoder_init == "vis" and not (encoder_init_path / ENCODER_FILE).is_file():
        raise ParamsError(
            "bc.encoder_init",
            f"'vis' needs {encoder_init_path / ENCODER_FILE}; run pretrain_vis first or set bc.encoder_init: none",
        )


def check_labels_exist(store: FrameStore, split: str, samples: Samples, offsets_ms: list[int]) -> None:
    """A split whose every label is masked (frame clocks beside their action timelines, offsets past every replay's
    end) is the data's fault, said here, not a Lightning error about devices or batches; replays without a single
    label are named in one warning line (they add nothing to the run)."""
    unlabelled = sorted(set(store.replay_ids(split).tolist()) - set(np.unique(samples.replay).tolist()))
    if unlabelled and len(samples):
        names = [store.meta["replays"][rid]["replay"] for rid in unlabelled]
        print(
            f"warning: {len(names)} {split} replays have no label at bc.time_offsets_ms {offsets_ms} (every one "
            f"masked; shorter than the offsets?): {shown(names)}",
            file=sys.stderr,
            flush=True,
        )
    if len(samples) == 0:
        n_frames = int(store.replay_frame_count[store.replay_ids(split)].sum())
        raise DataError(
            store.path,
            f"none of the {n_frames} {split} frames has a label at bc.time_offsets_ms {offsets_ms}: every label is "
            "masked (at these offsets the frames lie outside their replays' action timelines); check the captures "
            "or choose smaller offsets",
        )


TEST_REPLAYS_FILE = "test_replays.json"


def score_split(module: BCModule, data: FrameDataModule, samples: Samples) -> tuple[dict[str, float], list[dict]]:
    """The module's current weights on `samples` (e.g. the test tracks), through Lightning's test loop in this
    process alone: the test/* metrics of tmpretrain.metrics, and the counts per replay behind them."""
    from lightning.pytorch.strategies import SingleDeviceStrategy

    data.test = samples
    trainer = L.Trainer(
        accelerator=module.device.type,
        strategy=SingleDeviceStrategy(device=module.device),
        precision="32-true",  # the weights as exported, as val scored them during training
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True if module.device.type == "cpu" else "warn",
    )
    trainer.test(module, datamodule=data, verbose=False)
    return dict(module.test_metrics), list(module.test_replays)


def replays_json(report: dict) -> str:
    """The report as JSON with one replay a line (readable diffs of a git-tracked file)."""
    head = json.dumps({k: v for k, v in report.items() if k != "replays"}, indent=1)
    rows = ",\n".join("  " + json.dumps(r) for r in report["replays"])
    return head[:-2] + ',\n "replays": [\n' + rows + "\n ]\n}\n"


def test_replays_report(store: FrameStore, params: BCParams, replays: list[dict]) -> dict:
    """reports/bc/test_replays.json: per test replay, labelled frames and correct predictions per offset, the
    cross-entropy and class-weight sums behind test/loss, and the exported head's confusion matrix (rows true,
    columns predicted, in `actions` order) from which test/acc, main_actions_acc, balanced_acc and macro_f1 follow.
    Summed over replays they give the reported test metrics back (the study's per-replay resampling unit)."""
    table = store.meta["replays"]
    return {
        "offsets_ms": list(params.time_offsets_ms),
        "offset_weights": list(params.offset_weights),
        "export_offset_ms": params.export_offset_ms,
        "actions": list(ACTION_NAMES),
        "main_actions": [ACTION_NAMES[i] for i in MAIN_ACTIONS],
        "replays": [
            {
                "replay": table[r["replay"]]["replay"],
                "track": table[r["replay"]]["track_id"],
                **{k: v for k, v in r.items() if k != "replay"},
            }
            for r in replays
        ],
    }


def add_test_metrics(metrics_file: Path, metrics: dict[str, float]) -> None:
    """Nest `test/...` into the run's DVC metrics file beside train/val (`dvc exp show` columns test.acc ...)."""
    summary = json.loads(metrics_file.read_text(encoding="utf-8"))
    for name, value in metrics.items():
        set_nested(summary, name, value, sep="/")
    metrics_file.write_text(json.dumps(summary, indent=4) + "\n", encoding="utf-8")


def run_bc(
    params: BCParams,
    cache_dir: Path,
    out_dir: Path,
    live_dir: Path,
    encoder_init_path: Path = Path("models/vis"),
    checkpoint_dir: Path | None = None,
) -> dict:
    store = FrameStore.open(cache_dir)
    check_bc_params(params, store, encoder_init_path)
    inputs = [encoder_init_path / ENCODER_FILE] if params.encoder_init == "vis" else []
    checkpoint = _epoch_checkpoint(checkpoint_dir, checkpoint_key(params, store, *inputs), "pretrain_bc")
    reports = _prepare(live_dir, params.seed)
    offsets = params.time_offsets_ms
    train = build_samples(store, "train", params.n_stack, offsets, params.target)
    val = build_samples(store, "val", params.n_stack, offsets, params.target)
    for split, samples in (("train", train), ("val", val)):
        check_labels_exist(store, split, samples, offsets)
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
    module = BCModule(params=params, image_hw=store.image_hw, class_weights=weights)
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
    check_output_room(module.model, out_dir, live_dir, checkpoint)
    selector = _fit(
        module,
        data,
        params,
        reports,
        BC_HEADLINE + [f"val/acc_offset/{offset_label(d)}" for d in offsets if len(offsets) > 1],
        checkpoint,
    )
    if not selector.is_global_zero:  # DDP: rank 0 alone writes the export (all ranks hold the same weights)
        return {"selected": selector.selected, "history": selector.history, "timing": None, "exported": False}
    model: BCModel = module.model
    model.load_state_dict(selector.selected.state_dict)
    if len(store.replay_ids("test")):  # a cache built with data.test_fraction > 0
        test = build_samples(store, "test", params.n_stack, offsets, params.target)
        test_metrics, test_counts = score_split(module, data, test)
        add_test_metrics(reports / "metrics.json", test_metrics)
        report = test_replays_report(store, params, test_counts)
        (reports / TEST_REPLAYS_FILE).write_text(replays_json(report), encoding="utf-8")
    with replace_when_complete(out_dir, live_dir) as staging:  # verified, then in place of the previous ones
        export_encoder(model.encoder, staging / ENCODER_FILE)
        head = module.export_head
        if params.use_actions_head:
            export_actions_head(model.heads[head], staging / ACTIONS_HEAD_FILE, model.head_input_dim)
        else:  # not the agent's layout; what closed-loop evaluation drives with
            export_linear_head(model.heads[head], staging / LINEAR_HEAD_FILE, model.head_input_dim)
        if params.n_stack > 1:
            export_stack_fusion(model.stack_fusion, staging / STACK_FUSION_FILE, params.n_stack, model.img_feature_dim)
        if params.use_floats:
            export_float_features(model.float_feature_extractor, staging / FLOAT_FEATURES_FILE)
        timing = label_timing_report(store, val, offsets, params.target)
        (staging / LABEL_TIMING_FILE).write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
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
            "head_layout": "A_head" if params.use_actions_head else "linear (linear_head.pt: not the agent's layout)",
            "head_input_dim": model.head_input_dim if params.use_actions_head else None,
            "use_floats": params.use_floats,
            "encoder_init": params.encoder_init,
            "encoder_init_meta": {"selection": init_meta.get("selection"), "task": init_meta.get("task")}
            if init_meta
            else None,
            "encoder_arch_hash": arch_hash(model.encoder),
            "model_arch_hash": arch_hash(model),
            "label_fallback_replays": store.meta["label_fallback_replays"],
            **_common_meta(store, params, selector.selected, len(selector.history), "pretrain_bc"),
        }
        meta = write_meta(staging, meta)
    _finished(checkpoint)
    return {
        "selected": selector.selected,
        "history": selector.history,
        "timing": timing,
        "exported": True,
        "meta": meta,
    }
