"""Lightning modules for Level 0 (vision) and Level 1 (behavioral cloning), the epoch logger, and the trainer.

Metrics are accumulated exactly over each epoch (sums and confusion matrices, not means of batch means), logged
once per epoch with x = epoch through one DVCLive `Live` (why not the stock logger: docs/training.md), and the
epoch chosen by `selection` is kept in memory so that the export is the selected epoch's weights, never the last.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from dvclive import Live
from lightning.pytorch.callbacks import Callback, EarlyStopping, TQDMProgressBar

from .actions import ACTION_NAMES, N_ACTIONS
from .metrics import epoch_metrics, support_counts
from .models import BCModel, VisionModel, normalize
from .params import BCParams, EarlyStoppingParams, SelectionParams, TrainerParams, VisParams
from .windows import MASKED


def _optimizer(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # AdamW only when decay is asked for: plain Adam otherwise, as the seed's runs did.
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

    def __init__(self, params: BCParams, image_hw: tuple[int, int], class_weights: torch.Tensor | None = None):
        super().__init__()
        self.params = params
        self.model = BCModel(
            image_hw,
            params.n_stack,
            len(params.time_offsets_ms),
            params.use_actions_head,
            params.dense_hidden_dimension,
            params.dropout,
            params.action_head_dropout,
            params.use_floats,
            params.checkpoint_stack,
        )
        self.register_buffer("offset_weights", torch.tensor(params.offset_weights, dtype=torch.float32))
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(N_ACTIONS))
        self.export_head = params.time_offsets_ms.index(params.export_offset_ms)
        self._reset("train")
        self._reset("val")

    def _reset(self, split: str) -> None:
        n = len(self.params.time_offsets_ms)
        setattr(
            self,
            f"_{split}_acc",
            {
                "ce_sum": torch.zeros(n, dtype=torch.float64),
                "weight_sum": torch.zeros(n, dtype=torch.float64),
                "cms": [torch.zeros(N_ACTIONS, N_ACTIONS, dtype=torch.long) for _ in range(n)],
                "preds": [],
                "labels": [],
            },
        )

    def _synced(self, split: str) -> dict:
        """This split's accumulators summed over DDP ranks, once per epoch (a collective: every rank calls it)."""
        acc = getattr(self, f"_{split}_acc")
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
        acc = getattr(self, f"_{split}_acc")
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
        return torch.stack(losses).sum() / torch.stack(weights).sum()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

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
        val = self._val_acc
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
    def __init__(self, params: VisParams, image_hw: tuple[int, int]):
        super().__init__()
        self.params = params
        self.model = VisionModel(
            image_hw,
            params.task,
            params.latent_dim,
            params.vae_beta,
            params.simclr_temperature,
            params.simclr_projection_dim,
        )
        self._sums: dict[str, dict] = {"train": {}, "val": {}}
        self._counts = {"train": 0, "val": 0}
        self._synced: set[str] = set()
        self._generator: torch.Generator | None = None

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        x = normalize(batch["x"], self.params.image_normalization)  # (B, 1, H, W)
        if self._generator is None or self._generator.device != x.device:
            # SimCLR views and VAE noise come from a generator seeded like everything else.
            self._generator = torch.Generator(device=x.device).manual_seed(self.params.seed)
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

    def collect_epoch(self) -> tuple[dict[str, float], dict]:
        out = {**self._means("train"), **self._means("val")}
        self._sums = {"train": {}, "val": {}}
        self._counts = {"train": 0, "val": 0}
        self._synced = set()
        return out, {}

    def configure_optimizers(self):
        return _optimizer(self.parameters(), self.params.lr, self.params.weight_decay)


# ------------------------------------------------------------------------------------ epoch logger


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


class EpochLogger(Callback):
    """Logs every epoch's metrics to DVCLive with x = epoch, keeps the selected epoch's weights, and prints a
    one-line summary per epoch. On rank 0 only; the summary (metrics.json) gains a `best` block at the end."""

    def __init__(self, live_dir: Path, selection: SelectionParams, headline: list[str]):
        self.live_dir = Path(live_dir)
        self.selected = Selected(selection.metric, selection.mode)
        self.headline = headline
        self.live: Live | None = None
        self.history: list[dict] = []
        self.is_global_zero = True

    def on_fit_start(self, trainer, pl_module) -> None:
        self.is_global_zero = trainer.is_global_zero
        if trainer.is_global_zero:
            self.live = Live(str(self.live_dir), dvcyaml=False, save_dvc_exp=False, report=None)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics, extra = pl_module.collect_epoch()
        metrics = {k: v for k, v in metrics.items() if not math.isnan(v)}
        metrics["train/lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        epoch = trainer.current_epoch
        self.history.append({"epoch": epoch, **metrics})
        if self.selected.metric not in metrics:
            raise KeyError(f"selection metric {self.selected.metric!r} is not among the metrics: {sorted(metrics)}")
        if self.selected.improves(metrics[self.selected.metric]):
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
            shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in self.headline if k in metrics)
            line = f"epoch {epoch:3d}  {shown}"
            bar = trainer.progress_bar_callback
            bar.print(line) if bar is not None else print(line, flush=True)

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


# ------------------------------------------------------------------------------------------ trainer


class _QuietLightning(logging.Filter):
    """Drop Lightning's product advert from every run's output (it is not about this run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_QuietLightning())
# Lightning 2.6 calls a pytree API that torch 2.13 deprecates; nothing for a user to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def build_trainer(
    trainer: TrainerParams, epochs: int, grad_clip: float, early: EarlyStoppingParams, logger: EpochLogger
) -> L.Trainer:
    callbacks: list[Callback] = [logger, TQDMProgressBar(leave=False)]
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
    on_cpu = trainer.accelerator == "cpu"
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
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # ShuffledBatches shards by rank itself
        # Bit-identical reruns on CPU; on GPUs some kernels have no deterministic variant, so only warn there.
        deterministic=True if on_cpu else "warn",
        enable_model_summary=False,
    )
