"""What CPU arithmetic depends on, pinned so a training run gives the same bytes on any x86-64 machine.

torch picks its CPU kernels by instruction set (ATen's AVX2 / AVX-512 variants, oneDNN's convolutions, MKL's
matrix products) and splits reductions by thread count; each choice changes the rounding, so the same commit
retrained on another machine gave other models. `pin_kernels()` runs when `tmpretrain` is imported, before torch
is: it sets the instruction set to AVX2 (every x86-64 CPU of the last decade has it) whatever the caller's
environment says. `set_threads(n)` fixes the thread count (`vis/bc.trainer.cpu_threads`). GPUs are not pinned:
their kernels differ by model, and runs there are compared by intervals (docs/training.md).
"""

from __future__ import annotations

import os
import platform

# torch reads these once, when its CPU kernels, oneDNN and MKL first run.
PINNED_ISA = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
# The one way out: TMPRETRAIN_CPU_ISA=native keeps torch's own choice (this machine's widest kernels), for speed
# at the price of bytes that differ between machines (docs/training.md has the cost measured both ways).
OPT_OUT = "TMPRETRAIN_CPU_ISA"


def _has_avx2() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i686"):
        return False
    try:  # numpy's own CPU feature detection: portable (Linux, Windows, macOS) and loaded without torch
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get("AVX2"))


def pin_kernels() -> dict[str, str]:
    """Set the kernel instruction set to AVX2 in this process's environment (an x86-64 CPU without AVX2, or
    another architecture, keeps torch's own choice, and so does TMPRETRAIN_CPU_ISA=native). Returns what was set."""
    if os.environ.get(OPT_OUT, "").lower() == "native" or not _has_avx2():
        return {}
    os.environ.update(PINNED_ISA)
    return dict(PINNED_ISA)


def set_threads(threads: int) -> None:
    """torch's intra-op threads (what OMP_NUM_THREADS would set): reductions are split by it."""
    import torch

    torch.set_num_threads(int(threads))


def kernel_summary() -> dict:
    """What a run's arithmetic was pinned to, for an export's metadata."""
    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_threads": torch.get_num_threads()}
