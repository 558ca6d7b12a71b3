"""Retrains reproduce on any x86-64 machine: the kernels' instruction set and the thread count are pinned by the
package, so the caller's environment (OMP_NUM_THREADS, ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) cannot change a
training run's bytes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.setups import STAGE_TIMEOUT, stage_command, stage_env, tiny_project
from tmpretrain.cpu_math import _has_avx2

# A conv encoder and the agent's A_head, two epochs: enough arithmetic for kernels and threads to show.
BC = {
    "encoder_init": "none",
    "epochs": 2,
    "batch_size": 32,
    "time_offsets_ms": [0],
    "offset_weights": [1.0],
    "early_stopping": {"enabled": False},
    "trainer": {"accelerator": "cpu"},
}
CALLERS = {
    "plain": {},
    "one thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "avx512 kernels": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_CBWR": "AUTO"},
    "default kernels": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def _export_bytes(root: Path) -> dict[str, str]:
    files = sorted((root / "models" / "bc").glob("*.pt")) + [root / "reports" / "bc" / "metrics.json"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.skipif(not _has_avx2(), reason="the pinned instruction set is AVX2; this CPU has none")
def test_a_training_run_gives_the_same_bytes_whatever_the_callers_cpu_environment(stage_store, tmp_path):
    results = {}
    for name, env in CALLERS.items():
        root = tiny_project(tmp_path / name.replace(" ", "_"), stage_store, bc=BC)
        run = subprocess.run(
            stage_command("pretrain_bc"),
            cwd=root,
            capture_output=True,
            text=True,
            env={**stage_env(), **env},
            timeout=STAGE_TIMEOUT,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        results[name] = _export_bytes(root)
        meta = json.loads((root / "models" / "bc" / "pretrain_meta.json").read_text())
        assert meta["cpu_math"] == {"cpu_capability": "AVX2", "cpu_threads": 2}, name
    assert len(results["plain"]) >= 3
    assert all(files == results["plain"] for files in results.values()), results


def test_the_pin_is_set_before_torch_loads_and_overrides_the_caller():
    code = "import tmpretrain, torch; print(torch.backends.cpu.get_cpu_capability())"
    env = {**stage_env(), "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("AVX2" if _has_avx2() else "DEFAULT")


SIMULATION = """
import hashlib
import numpy as np
from tmpretrain.synthetic.env import SynthTrackEnv
h = hashlib.sha256()
for track in (0, 3):
    env = SynthTrackEnv(track=track, autopilot=True)
    env.reset(seed=1)
    for _ in range(120):
        _, _, terminated, truncated, info = env.step(0)
        h.update(env.render_frame().tobytes() + np.float64([info["x"], info["y"], info["speed"]]).tobytes())
        if terminated or truncated:
            break
print(h.hexdigest())
"""


def test_the_compiled_simulator_gives_the_same_bytes_for_any_target_cpu():
    """The car, the locating and the renderer are compiled for the machine's CPU (numba): elementwise IEEE
    arithmetic without fast-math, so the baseline x86-64 target and this machine's widest vectors agree."""
    hashes = set()
    for cpu in ("generic", "haswell", None):
        env = {k: v for k, v in stage_env().items() if k != "NUMBA_CPU_NAME"}
        if cpu:
            env["NUMBA_CPU_NAME"] = cpu
        out = subprocess.run([sys.executable, "-c", SIMULATION], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1, hashes
