"""Lightning modules for Level 0 (vision) and Level 1 (behavioral cloning), the epoch selector, and the trainer.

Metrics are accumulated exactly over each epoch (sums and confusion matrices, not means of batch means), logged
once per epoch with x = epoch through one DVCLive `Live` (why not the stock logger: docs/training.md), and the
epoch chosen by `selection` is kept in memory so that the export is the selected epoch's weights, never the last.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from dvclive import Live
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping, TQDMProgressBar

from .actions import ACTION_NAMES, N_ACTIONS
from .cpu_math import set_threads
from .errors import Interrupted
from .metrics import epoch_metrics, support_counts
from .models import BCModel, VisionModel, normalize
from .params import BCParams, EarlyStoppingParams, SelectionParams, TrainerParams, VisParams
from .windows import MASKED


def _optimizer(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # AdamW only when decay is asked for: plain Adam otherwise, as the original study's runs did.
    if weight_decay > 0:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _sum_over_ranks(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` summed over all DDP processes (a CPU copy); `t` itself in a single process. Every epoch metric is a
    ratio of sums (CE sums, confusion matrices), so summed accumulators give exactly the single-process value."""
    if _world_size() < 2:
        return t
    on = t.to(device)  # NCCL reduces CUDA tensors only, gloo CPU ones: the module's device suits the backend
    dist.all_reduce(on, op=dist.ReduceOp.SUM)
    return on.cpu()


def _gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...]; [obj] in a single process."""
    if _world_size() < 2:
        return [obj]
    out = [None] * _world_size()
    dist.all_gather_object(out, obj)
    return out


def _channels_last(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if enabled and x.dim() == 4 else x


# --------------------------------------------------------------------------------------------- BC


class BCModule(L.LightningModule):
    """Cross-entropy per offset head, masked labels ignored; loss = sum_d w_d * CE_d / sum_d w_d, so runs with
    different offset sets report comparable losses."""

    def __init__(self, *, params: BCParams, image_hw: tuple[int, int], class_weights: torch.Tensor | None = None):
        super().__init__()
        self.params = params
        self.model = BCModel(
            image_hw=image_hw,
            n_stack=params.n_stack,
            n_offsets=len(params.time_offsets_ms),
            use_actions_head=params.use_actions_head,
            dense_hidden_dimension=params.dense_hidden_dimension,
            dropout=params.dropout,
            action_head_dropout=params.action_head_dropout,
            use_floats=params.use_floats,
            checkpoint_stack=params.checkpoint_stack,
        )
        self.register_buffer("offset_weights", torch.tensor(params.offset_weights, dtype=torch.float32))
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(N_ACTIONS))
        self.export_head = params.time_offsets_ms.index(params.export_offset_ms)
        # Per split: cross-entropy and weight sums per offset, a confusion matrix per offset, the exported head's
        # val predictions; the test split also counts per replay (`test_replays`).
        self._accs: dict[str, dict] = {}
        self._reset("train")
        self._reset("val")
        # What the last `trainer.test` measured: the test/* metrics of tmpretrain.metrics and the per-replay counts.
        self.test_metrics: dict[str, float] = {}
        self.test_replays: list[dict] = []

    def _reset(self, split: str) -> None:
        n = len(self.params.time_offsets_ms)
        self._accs[split] = {
            "ce_sum": torch.zeros(n, dtype=torch.float64),
            "weight_sum": torch.zeros(n, dtype=torch.float64),
            "cms": [torch.zeros(N_ACTIONS, N_ACTIONS, dtype=torch.long) for _ in range(n)],
            "preds": [],
            "labels": [],
            "replays": {},
        }

    def _synced(self, split: str) -> dict:
        """This split's accumulators summed over DDP ranks, once per epoch (a collective: every rank calls it)."""
        acc = self._accs[split]
        if not acc.get("synced"):
            acc["ce_sum"] = _sum_over_ranks(acc["ce_sum"], self.device)
            acc["weight_sum"] = _sum_over_ranks(acc["weight_sum"], self.device)
            acc["cms"] = list(_sum_over_ranks(torch.stack(acc["cms"]), self.device).unbind(0))
            if split == "val" and _world_size() > 1:
                mine = [torch.cat(acc[k]).tolist() if acc[k] else [] for k in ("preds", "labels")]
                gathered = _gather_objects(mine)
                acc["preds"] = [torch.tensor(p, dtype=torch.long) for p, _ in gathered if p]
                acc["labels"] = [torch.tensor(y, dtype=torch.long) for _, y in gathered if y]
            acc["synced"] = True
        return acc

    def forward(self, x: torch.Tensor, floats: torch.Tensor | None = None) -> torch.Tensor:
        x = normalize(x, self.params.image_normalization)
        return self.model(_channels_last(x, self.params.trainer.channels_last), floats)

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        logits = self(batch["x"], batch.get("floats")).float()  # (B, n_off, 12)
        y = batch["y"]
        acc = self._accs[split]
        losses, weights = [], []
        n_cls = logits.shape[-1]
        if acc["ce_sum"].device != logits.device:  # accumulate on the device: no host sync in a training step
            acc["ce_sum"], acc["weight_sum"] = acc["ce_sum"].to(logits.device), acc["weight_sum"].to(logits.device)
            acc["cms"] = [cm.to(logits.device) for cm in acc["cms"]]
        for j in range(logits.shape[1]):
            valid = y[:, j] != MASKED
            target = y[:, j].clamp(min=0)  # masked rows get weight 0 below, so their class does not matter
            ce = (F.cross_entropy(logits[:, j], target, weight=self.class_weights, reduction="none") * valid).sum()
            norm = (self.class_weights[target] * valid).sum()  # weighted-mean CE, as F.cross_entropy(weight=) has it
            present = valid.any()  # an offset with no label in this batch adds nothing (was: skipped)
            losses.append(torch.where(present, self.offset_weights[j] * ce / norm.clamp(min=1e-12), 0.0))
            weights.append(torch.where(present, self.offset_weights[j], 0.0))
            acc["ce_sum"][j] += ce.detach().double()
            acc["weight_sum"][j] += norm.detach().double()
            preds = logits[:, j].detach().argmax(dim=1)
            acc["cms"][j].view(-1).index_put_((target * n_cls + preds,), valid.long(), accumulate=True)
            if split == "val" and j == self.export_head:
                acc["preds"].append(preds[valid].cpu())
                acc["labels"].append(target[valid].cpu())
            if "replay" in batch:
                rows = F.cross_entropy(logits[:, j], target, weight=self.class_weights, reduction="none") * valid
                self._count_replays(acc["replays"], batch["replay"], j, target, preds, valid, rows)
        return torch.stack(losses).sum() / torch.stack(weights).sum()

    def _count_replays(
        self, replays: dict, replay: torch.Tensor, j: int, target, preds, valid, ce_rows: torch.Tensor
    ) -> None:
        """Per replay and offset: labelled frames, correct predictions, cross-entropy and weight sums; for the
        exported head also the confusion matrix, from which every test/* metric of that replay set follows."""
        weights = self.class_weights[target] * valid
        replay, target, preds, valid = replay.cpu(), target.cpu(), preds.cpu(), valid.cpu()
        ce_rows, weights = ce_rows.detach().double().cpu(), weights.detach().double().cpu()
        n_off = len(self.params.time_offsets_ms)
        for rid in replay.unique().tolist():
            rows = (replay == rid) & valid
            entry = replays.setdefault(
                int(rid),
                {
                    "frames": [0] * n_off,
                    "correct": [0] * n_off,
                    "ce_sum": [0.0] * n_off,
                    "weight_sum": [0.0] * n_off,
                    "confusion": torch.zeros(N_ACTIONS, N_ACTIONS, dtype=torch.long),
                },
            )
            entry["frames"][j] += int(rows.sum())
            entry["correct"][j] += int(((preds == target) & rows).sum())
            entry["ce_sum"][j] += float(ce_rows[rows].sum())
            entry["weight_sum"][j] += float(weights[rows].sum())
            if j == self.export_head:
                entry["confusion"].view(-1).index_put_(
                    (target[rows] * N_ACTIONS + preds[rows],),
                    torch.ones(int(rows.sum()), dtype=torch.long),
                    accumulate=True,
                )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._reset("test")

    def on_test_epoch_end(self) -> None:
        """The exported weights on the test split, scored by Lightning's test loop in one process (rank 0 after
        training): the same metrics as val, and the counts per replay (`test_replays`)."""
        acc = self._accs["test"]
        p = self.params
        self.test_metrics = epoch_metrics(
            "test", self._epoch_loss(acc), acc["cms"], p.time_offsets_ms, p.export_offset_ms
        )
        self.test_replays = [
            {
                **{k: v for k, v in entry.items() if k != "confusion"},
                "replay": rid,
                "confusion": entry["confusion"].tolist(),
            }
            for rid, entry in sorted(acc["replays"].items())
        ]

    def _epoch_loss(self, acc: dict) -> float:
        acc["ce_sum"], acc["weight_sum"] = acc["ce_sum"].cpu(), acc["weight_sum"].cpu()
        acc["cms"] = [cm.cpu() for cm in acc["cms"]]
        present = acc["weight_sum"] > 0
        w = self.offset_weights.cpu().double()[present]
        return float((w * acc["ce_sum"][present] / acc["weight_sum"][present]).sum() / w.sum())

    def on_validation_epoch_end(self) -> None:
        # Lightning's EarlyStopping reads trainer.callback_metrics: expose every val metric there.
        acc = self._synced("val")
        if not any(cm.sum() for cm in acc["cms"]):
            return
        metrics = epoch_metrics(
            "val", self._epoch_loss(acc), acc["cms"], self.params.time_offsets_ms, self.params.export_offset_ms
        )
        self.log_dict({k: float(v) for k, v in metrics.items() if not math.isnan(v)}, sync_dist=True)

    def collect_epoch(self) -> tuple[dict[str, float], dict]:
        """This epoch's metrics (train and val) and the exported head's val predictions; resets accumulators."""
        out = {}
        for split in ("train", "val"):
            acc = self._synced(split)
            if any(cm.sum() for cm in acc["cms"]):
                out.update(
                    epoch_metrics(
                        split,
                        self._epoch_loss(acc),
                        acc["cms"],
                        self.params.time_offsets_ms,
                        self.params.export_offset_ms,
                    )
                )
        val = self._accs["val"]
        extra = {
            "support": support_counts(val["cms"][self.export_head]),
            "preds": torch.cat(val["preds"]).tolist() if val["preds"] else [],
            "labels": torch.cat(val["labels"]).tolist() if val["labels"] else [],
        }
        self._reset("train")
        self._reset("val")
        return out, extra

    def configure_optimizers(self):
        return _optimizer(self.parameters(), self.params.lr, self.params.weight_decay)


def inverse_frequency_weights(labels: np.ndarray) -> torch.Tensor:
    """Class weights N / (K * n_c) over the K classes present in the training labels; absent classes get 0."""
    valid = labels[labels != MASKED]
    counts = np.bincount(valid, minlength=N_ACTIONS).astype(np.float64)
    present = counts > 0
    weights = np.zeros(N_ACTIONS)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


# ---------------------------------------------------------------------------------------- Level 0


class VisModule(L.LightningModule):
    def __init__(self, *, params: VisParams, image_hw: tuple[int, int]):
        super().__init__()
        self.params = params
        self.model = VisionModel(
            image_hw=image_hw,
            task=params.task,
            latent_dim=params.latent_dim,
            vae_beta=params.vae_beta,
            simclr_temperature=params.simclr_temperature,
            simclr_projection_dim=params.simclr_projection_dim,
        )
        self._sums: dict[str, dict] = {"train": {}, "val": {}}
        self._counts = {"train": 0, "val": 0}
        self._synced: set[str] = set()
        self._generator: torch.Generator | None = None
        self._resumed_generator_state: torch.Tensor | None = None

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        x = normalize(batch["x"], self.params.image_normalization)  # (B, 1, H, W)
        if self._generator is None or self._generator.device != x.device:
            # SimCLR views and VAE noise come from a generator seeded like everything else.
            self._generator = torch.Generator(device=x.device).manual_seed(self.params.seed)
            if self._resumed_generator_state is not None:  # a resumed run continues the interrupted run's stream
                self._generator.set_state(self._resumed_generator_state)
                self._resumed_generator_state = None
        loss, extra = self.model.loss(_channels_last(x, self.params.trainer.channels_last), self._generator)
        b = x.shape[0]
        sums = self._sums[split]
        for name, value in {"loss": loss.detach(), **extra}.items():  # device tensors: no host sync per step
            sums[name] = sums.get(name, 0.0) + value.detach().double() * b
        self._counts[split] += b
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def _sync(self, split: str) -> None:
        """Sum this split's sums and counts over DDP ranks, once per epoch (a collective: every rank calls it)."""
        if split in self._synced:
            return
        sums, count = {}, 0
        local = {name: float(value) for name, value in self._sums[split].items()}  # the epoch's one host sync
        for rank_sums, rank_count in _gather_objects((local, self._counts[split])):
            for name, value in rank_sums.items():
                sums[name] = sums.get(name, 0.0) + value
            count += rank_count
        self._sums[split], self._counts[split] = sums, count
        self._synced.add(split)

    def _means(self, split: str) -> dict[str, float]:
        self._sync(split)
        n = self._counts[split]
        return {f"{split}/{k}": v / n for k, v in self._sums[split].items()} if n else {}

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self._means("val"), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._generator is not None:
            checkpoint["vis_generator_state"] = self._generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_generator_state = checkpoint.get("vis_generator_state")

    def collect_epoch(self) -> tuple[dict[str, float], dict]:
        out = {**self._means("train"), **self._means("val")}
        self._sums = {"train": {}, "val": {}}
        self._counts = {"train": 0, "val": 0}
        self._synced = set()
        return out, {}

    def configure_optimizers(self):
        return _optimizer(self.parameters(), self.params.lr, self.params.weight_decay)


# ------------------------------------------------------------------------------------ epoch selector


def terminal_output() -> bool:
    """Progress bars only for a person watching: Lightning's bar writes to stdout, and redirected to a file (a CI
    log, `dvc repro > log`) every redraw would be a line of carriage returns."""
    return sys.stdout.isatty()


def _say(trainer: L.Trainer, line: str) -> None:
    bar = trainer.progress_bar_callback
    bar.print(line) if bar is not None else print(line, flush=True)


@dataclass
class Selected:
    """The epoch chosen by the selection rule, with its weights and metrics."""

    metric: str
    mode: str
    epoch: int = -1
    value: float = math.nan
    state_dict: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.epoch < 0:
            return True
        return value < self.value if self.mode == "min" else value > self.value


class EpochSelector(Callback):
    """Chooses the exported epoch: keeps the weights of the epoch that `selection` ranks best so far. Also logs every
    epoch's metrics to DVCLive with x = epoch and prints one line
    per epoch (the `console` metrics, seconds, `*best` when the epoch is the new selected one). On rank 0 only; the
    summary (metrics.json) gains a `best` block with the `headline` metrics at the end.

    Its state (history and selected weights) travels in a resume checkpoint; a resumed run rewrites the finished
    epochs' DVCLive rows from it, since DVC deletes the stage's outputs before running it again."""

    def __init__(self, live_dir: Path, selection: SelectionParams, headline: list[str], console: list[str]):
        self.live_dir = Path(live_dir)
        self.selected = Selected(selection.metric, selection.mode)
        self.headline = headline
        self.console = console + [selection.metric] * (selection.metric not in console)
        self.live: Live | None = None
        self.history: list[dict] = []
        self.is_global_zero = True
        self._epoch_start = 0.0

    def state_dict(self) -> dict:
        # Plain containers and tensors only: Lightning loads checkpoints with torch.load(weights_only=True).
        sel = self.selected
        return {"history": self.history, "selected": {f.name: getattr(sel, f.name) for f in fields(sel)}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])
        self.selected = Selected(**state_dict["selected"])

    def on_fit_start(self, trainer, pl_module) -> None:
        self.is_global_zero = trainer.is_global_zero
        if not trainer.is_global_zero:
            return
        self.live = Live(str(self.live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
        if self.history:
            for row in self.history:  # the same calls in the same order: the same files as the interrupted run's
                for name, value in row.items():
                    if name != "epoch":
                        self.live.log_metric(name, value)
                self.live.next_step()
            last = self.history[-1]["epoch"]
            _say(trainer, f"resuming after epoch {last}/{trainer.max_epochs} from {trainer.ckpt_path}")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics, extra = pl_module.collect_epoch()
        metrics = {k: v for k, v in metrics.items() if not math.isnan(v)}
        metrics["train/lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        epoch = trainer.current_epoch
        self.history.append({"epoch": epoch, **metrics})
        if self.selected.metric not in metrics:
            raise KeyError(f"selection metric {self.selected.metric!r} is not among the metrics: {sorted(metrics)}")
        best = self.selected.improves(metrics[self.selected.metric])
        if best:
            state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
            self.selected = Selected(
                self.selected.metric,
                self.selected.mode,
                epoch,
                metrics[self.selected.metric],
                state,
                dict(metrics),
                extra,
            )
        if self.live is not None:
            for name, value in metrics.items():
                self.live.log_metric(name, value)
            self.live.next_step()
            shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in self.console if k in metrics)
            seconds = time.perf_counter() - self._epoch_start
            _say(trainer, f"epoch {epoch}/{trainer.max_epochs}  {shown}  {seconds:.1f} s{'  *best' if best else ''}")

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.live is None:
            return
        sel = self.selected
        self.live.summary["best"] = {
            "epoch": sel.epoch,
            "metric": sel.metric,
            "mode": sel.mode,
            "value": sel.value,
            **{k: v for k, v in sel.metrics.items() if k in self.headline},
        }
        self.live.summary["epochs_run"] = len(self.history)
        support = sel.extra.get("support", {})
        if support:  # nested like every logged metric: val/support/<name>
            counts = {name.rsplit("/", 1)[-1]: n for name, n in support.items()}
            self.live.summary.setdefault("val", {})["support"] = counts
            total = sum(counts.values())
            # The bar val/acc must clear: always predicting the most frequent val action.
            self.live.summary["val"]["majority_baseline_acc"] = max(counts.values()) / total if total else 0.0
        if sel.extra.get("labels"):
            labels = [ACTION_NAMES[i] for i in sel.extra["labels"]]
            preds = [ACTION_NAMES[i] for i in sel.extra["preds"]]
            self.live.log_sklearn_plot(
                "confusion_matrix",
                labels,
                preds,
                name="confusion_matrix.json",
                title="val confusion (exported offset, selected epoch)",
                x_label="predicted",
                y_label="actual",
            )
        self.live.end()
        self._close_live()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._close_live()

    def _close_live(self) -> None:
        # DVCLive opens the project's DVC repository (and with it dulwich's pack files) and never closes it; left
        # to interpreter shutdown, dulwich's __del__ prints "Exception ignored ... sys.meta_path is None".
        repo = getattr(self.live, "_dvc_repo", None)
        if repo is not None:
            repo.close()
        self.live = None


# ------------------------------------------------------------------------------------------- resume


def _global_rng_states() -> dict:
    # The generators training draws from besides its own seeded ones (shuffles, SimCLR/VAE noise): dropout and
    # the DataLoader's per-iterator seed draw from torch's global CPU (and CUDA) generator.
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_global_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class EpochCheckpoint(Checkpoint):
    """After every finished epoch, everything a rerun needs to continue exactly where this run stopped, in one file
    that `trainer.fit(ckpt_path=...)` resumes from: weights, optimizer, loop counters, EarlyStopping and EpochSelector
    state (Lightning saves callbacks' state_dict), the global RNG states and whether training was told to stop.

    A Checkpoint subclass, so that Lightning calls it after EarlyStopping at each epoch end (their state is then
    this epoch's). Written aside and renamed: a kill mid-write leaves the previous epoch's file whole."""

    FILE = "last.ckpt"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / self.FILE
        self._trainer: L.Trainer | None = None
        self._resumed_should_stop = False
        self.saved_epoch: int | None = None  # the last epoch on disk

    def setup(self, trainer, pl_module, stage) -> None:
        self._trainer = trainer

    def resumable(self) -> Path | None:
        """The checkpoint to resume from, if any. One that does not load (cut short by a full disk or a copy, bytes
        damaged) is set aside beside its folder, not deleted, with one warning: the run then starts over instead of
        failing on every rerun until someone deletes .tmpretrain/checkpoints by hand."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            missing = sorted({"state_dict", "optimizer_states", "loops", "callbacks"} - set(state))
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
        except Exception as exc:  # torch.load raises many kinds: all mean "not resumable"
            aside = self.directory.with_name(f"{self.directory.name}.damaged.ckpt")
            os.replace(self.path, aside)
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            print(
                f"warning: {self.path} cannot be resumed ({reason}); set aside as {aside}, starting from epoch 0",
                file=sys.stderr,
                flush=True,
            )
            return None
        return self.path

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        partial = self.directory / (self.FILE + ".partial")
        trainer.save_checkpoint(partial)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        self.saved_epoch = trainer.current_epoch

    def state_dict(self) -> dict:
        # Called while this epoch's checkpoint is assembled: the RNG states are those at the end of the epoch.
        trainer = self._trainer
        return {
            "rng": _gather_objects(_global_rng_states()),  # one per process: each DDP rank has its own dropout
            "should_stop": bool(trainer and trainer.should_stop),
            "epoch": trainer.current_epoch if trainer else None,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        # Lightning restores callbacks just before the first training dataloader is iterated, which is where the
        # interrupted run went next after saving: from here on both draw the same numbers.
        states = state_dict["rng"]
        rank = self._trainer.global_rank if self._trainer is not None else 0
        _set_global_rng_states(states[rank] if rank < len(states) else states[0])
        self._resumed_should_stop = state_dict["should_stop"]
        self.saved_epoch = state_dict["epoch"]

    def on_train_start(self, trainer, pl_module) -> None:
        if self._resumed_should_stop:  # early stopping had ended training: go straight to the export
            trainer.should_stop = True

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # The stage's one line on an interrupt (stages.stage_entry) says what there is to resume from.
        if not isinstance(exception, Interrupted) or not trainer.is_global_zero:
            return
        if self.saved_epoch is None:
            exception.detail = " before the first epoch ended: nothing to resume; the previous outputs are kept"
        else:
            exception.detail = (
                f"; the previous outputs are kept, epochs 0-{self.saved_epoch} are saved in {self.directory}: run "
                "the stage again with the same params to resume"
            )


# ------------------------------------------------------------------------------------------ trainer


# Lightning's info lines ("GPU available: ...", "TPU available: ...", "`Trainer.fit` stopped: ...", its product
# tips) say nothing a stage does not print itself (its device line). Warnings still come through, and so does
# lightning.fabric's line about the processes of a DDP run.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
# Lightning 2.6 calls a pytree API that torch 2.13 deprecates; nothing for a user to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def device_summary(trainer: L.Trainer, requested: str) -> str:
    """Which device Lightning picked (what `accelerator: auto` became), threads and processes."""
    device = trainer.strategy.root_device
    name = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    processes = f", {trainer.world_size} processes" if trainer.world_size > 1 else ""
    return f"device {name}, accelerator {requested}, {torch.get_num_threads()} CPU threads{processes}"


def build_trainer(
    trainer: TrainerParams,
    epochs: int,
    grad_clip: float,
    early: EarlyStoppingParams,
    selector: EpochSelector,
    checkpoint: EpochCheckpoint | None = None,
) -> L.Trainer:
    bars = terminal_output()
    callbacks: list[Callback] = [selector]
    if bars:
        callbacks.append(TQDMProgressBar(leave=False))
    if early.enabled:
        callbacks.append(
            EarlyStopping(
                monitor=early.monitor,
                mode=early.mode,
                patience=early.patience,
                min_delta=early.min_delta,
                check_finite=True,
            )
        )
    if checkpoint is not None:
        callbacks.append(checkpoint)
    set_threads(trainer.cpu_threads)
    # `auto` runs on the CPU where there is no GPU: that run must be as bit-identical as an explicit `cpu` one.
    no_gpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    on_cpu = trainer.accelerator == "cpu" or (trainer.accelerator == "auto" and no_gpu)
    return L.Trainer(
        accelerator=trainer.accelerator,
        devices=trainer.devices,
        num_nodes=trainer.num_nodes,
        strategy=trainer.strategy,
        precision=trainer.precision,
        max_epochs=epochs,
        gradient_clip_val=grad_clip or None,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=checkpoint is not None,
        enable_progress_bar=bars,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # ShuffledBatches shards by rank itself
        # Bit-identical reruns on CPU; on GPUs some kernels have no deterministic variant, so only warn there.
        deterministic=True if on_cpu else "warn",
        enable_model_summary=False,
    )
