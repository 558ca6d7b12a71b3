"""Batches gathered by index from the uint8 frame store.

One loader item is a whole batch: the sampler yields an array of sample ids, the dataset turns it into one fancy
index into the memory-mapped store (no per-sample Python objects), so the loader is never the bottleneck. With
`trainer.cache_on_device` the store itself is moved to the accelerator once and batches carry only indices.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import ParamsError
from .frame_store import FrameStore
from .windows import Samples


class ShuffledBatches(Sampler):
    """Arrays of sample ids, one per batch; a fresh seeded permutation each epoch (Lightning calls set_epoch).

    Each of `world_size` processes takes every world_size-th batch, so DDP ranks see disjoint data. With `equalise`
    (training) the batch count is equalised across ranks (DDP needs the same number of steps everywhere); without it
    (validation) the ranks' batches together cover every sample exactly once."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        equalise: bool = True,
    ):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.equalise = rank, world_size, equalise
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n_batches = math.ceil(self.n / self.batch_size)
        if not self.equalise:
            return len(range(self.rank, n_batches, self.world_size))
        return n_batches // self.world_size or 1

    def __iter__(self):
        # A generator, so the order is drawn at the first batch: a resumed run's first iterator is made before
        # Lightning calls set_epoch, and must still get that epoch's order.
        order = (
            np.random.default_rng((self.seed, self.epoch)).permutation(self.n) if self.shuffle else np.arange(self.n)
        )
        batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        # Sorted ids read the memory map front to back; order inside a batch does not matter to the loss.
        for batch in batches[self.rank :: self.world_size][: len(self)]:
            yield np.sort(batch)


class WindowBatches(Dataset):
    """`dataset[ids]` -> {"x": uint8 (B, n_stack, H, W) or "window": int64 (B, n_stack), "y": int64 (B, n_off),
    "floats": float32 (B, 184) when used}."""

    def __init__(
        self, store: FrameStore, samples: Samples, use_floats: bool, gather_frames: bool = True, replays: bool = False
    ):
        self.replays = replays  # also "replay": int64 (B,), each sample's replay id (the test split's counts)
        self.frames = store.frames
        self.samples = samples
        self.floats = store.floats if use_floats else None
        self.gather_frames = gather_frames

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, ids: np.ndarray) -> dict:
        windows = self.samples.windows[ids]
        batch = {"y": torch.from_numpy(self.samples.labels[ids])}
        if self.gather_frames:
            flat = self.frames[windows.reshape(-1)]
            batch["x"] = torch.from_numpy(np.ascontiguousarray(flat).reshape(*windows.shape, *flat.shape[1:]))
        else:
            batch["window"] = torch.from_numpy(windows)
        if self.replays:
            batch["replay"] = torch.from_numpy(self.samples.replay[ids].astype(np.int64))
        if self.floats is not None:
            batch["floats"] = torch.from_numpy(np.asarray(self.floats[windows[:, -1]], dtype=np.float32))
        return batch


def resident_frames(frames: np.ndarray, device: torch.device, chunk: int = 65536) -> torch.Tensor:
    """The whole uint8 store as one tensor on `device`, copied in chunks (host memory never holds a second full
    copy; no tensor is made from the read-only memory map). Fails clearly when it does not fit."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if frames.nbytes > 0.8 * free:
            raise ParamsError(
                "trainer.cache_on_device",
                f"the frame store is {frames.nbytes / 2**30:.2f} GiB but {device} has {free / 2**30:.2f} GiB free; "
                "set cache_on_device: false (batches are then gathered on the host)",
            )
    out = torch.empty(frames.shape, dtype=torch.uint8, device=device)
    for i in range(0, len(frames), chunk):
        out[i : i + chunk].copy_(torch.from_numpy(np.array(frames[i : i + chunk])))
    return out


class FrameDataModule(L.LightningDataModule):
    """Train/val loaders over one frame store for one set of samples per split."""

    def __init__(
        self,
        store: FrameStore,
        train: Samples,
        val: Samples,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        use_floats: bool = False,
        cache_on_device: bool = False,
    ):
        super().__init__()
        self.store, self.train, self.val = store, train, val
        self.test: Samples | None = None
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.use_floats, self.cache_on_device = use_floats, cache_on_device
        self._device_frames: torch.Tensor | None = None

    def _loader(self, samples: Samples, shuffle: bool, all_ranks: bool = True, replays: bool = False) -> DataLoader:
        """all_ranks=False: every sample in this process alone (rank 0 scoring the test split after DDP);
        replays: batches also carry each sample's replay id."""
        distributed = self.trainer is not None and all_ranks
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if distributed else (0, 1)
        dataset = WindowBatches(
            self.store, samples, self.use_floats, gather_frames=not self.cache_on_device, replays=replays
        )
        n_batches = math.ceil(len(samples) / self.batch_size)
        if n_batches < world:
            raise ParamsError(
                "trainer.devices",
                f"{len(samples)} samples make {n_batches} batches of {self.batch_size}, fewer than the {world} "
                "processes: every process needs at least one batch (lower batch_size or devices x num_nodes)",
            )
        # Training batches are equalised across ranks (same step count); validation covers every sample once.
        sampler = ShuffledBatches(len(samples), self.batch_size, shuffle, self.seed, rank, world, equalise=shuffle)
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # Pinned host batches make the host->GPU copy asynchronous; pointless on CPU or with the store resident.
            pin_memory=self.trainer is not None
            and self.trainer.strategy.root_device.type == "cuda"
            and not self.cache_on_device,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The test split (set `test` first), every sample once in this process, with replay ids: Lightning's test
        loop scores the exported weights on it after training."""
        if self.test is None:
            raise ValueError("FrameDataModule.test is not set: no test split to score")
        return self._loader(self.test, shuffle=False, all_ranks=False, replays=True)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if "window" in batch:  # cache on device: gather there, the host never touches pixels
            if self._device_frames is None or self._device_frames.device != batch["window"].device:
                self._device_frames = resident_frames(self.store.frames, batch["window"].device)
            batch["x"] = self._device_frames[batch.pop("window")]
        return batch
