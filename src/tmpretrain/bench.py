"""Performance benchmark of the data path and training loop: `tmpretrain bench [--quick] [--out PATH]`.

Measures on the current machine, on a tree it writes itself (tmpretrain.synthetic.trees) or on a capture tree given
with --replays:

  ingest      frames/s of build_frame_store, and cache bytes per frame against H x W (the uint8 store's promise)
  throughput  training samples/s of the same BCModule, batch size and step count fed (a) through the real
              FrameDataModule loader (host gather by index, normalisation on the device), (b) through the loader
              with the store resident on the device (trainer.cache_on_device), (c) from one pre-made in-memory
              uint8 batch (zero data cost); (a)/(c) is the figure of merit
  rss         peak RSS of a BC run (run_bc) at n_stack 1 and n_stack 3, each in its own fresh subprocess
  dvc         wall time of a no-op `dvc repro` (every stage up to date) on a throwaway copy of the pipeline
  device      on a CUDA GPU: samples/s of the BC model at the cache resolution with the uint8 store resident on
              the GPU, fp32 vs bf16 autocast vs + channels_last (+ torch.compile with --compile)

Prints a table and writes everything (with the machine, the sizes and each target met or not) as JSON.
See docs/performance.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from .synthetic.trees import write_tree

# ------------------------------------------------------------------------------------------ sizes


@dataclass
class Sizes:
    tracks: int = 12  # the default synthesized data set: 12 tracks x 3 replays x 400 frames, 128x128 captures
    replays_per_track: int = 3
    frames_per_replay: int = 400
    capture_size: int = 128
    image_size: int = 64  # the cache resolution (data.image_height / image_width)
    batch_size: int = 256  # bc.batch_size
    steps: int = 6  # timed training steps per arm and round
    warmup: int = 2  # untimed steps before each timed run
    rounds: int = 2  # arms run interleaved this many times; the best round of each arm counts
    rss_batches: int = 6  # train (and val) batches of each RSS run
    device_batch_size: int = 4096  # the original study's batch, for the GPU section
    device_steps: int = 50


QUICK = Sizes(
    tracks=3,
    replays_per_track=2,
    frames_per_replay=50,
    capture_size=48,
    image_size=40,
    batch_size=32,
    steps=3,
    warmup=1,
    rounds=1,
    rss_batches=2,
    device_batch_size=32,
    device_steps=2,
)

TARGETS = {
    "loader_over_in_memory": (">=", 0.9),
    "rss_n3_over_n1": ("<=", 1.2),
    "cache_overhead": ("<=", 0.05),
    "dvc_noop_repro_s": ("<", 2.0),
    "device_samples_per_s": (">=", 1_000_000),
}


def project_root() -> Path | None:
    """The checkout this package was installed from (editable install), if it has the pipeline."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "dvc.yaml").is_file() and (root / "params.yaml").is_file() else None


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------ ingest


def bench_ingest(replays: Path, cache_dir: Path, image_size: int, workers: int) -> dict:
    from .frame_store import build_frame_store
    from .params import DataParams

    params = DataParams(
        replays_dir=str(replays),
        cache_dir=str(cache_dir),
        image_height=image_size,
        image_width=image_size,
        val_fraction=0.25,
        workers=workers,
    )
    t0 = time.perf_counter()
    build_frame_store(params, progress=False)
    seconds = time.perf_counter() - t0
    frames = np.load(cache_dir / "frames.npy", mmap_mode="r")
    n, h, w = frames.shape
    frames_bytes = (cache_dir / "frames.npy").stat().st_size
    cache_bytes = _dir_bytes(cache_dir)
    return {
        "n_frames": int(n),
        "image_hw": [int(h), int(w)],
        "workers": workers,
        "seconds": seconds,
        "frames_per_s": n / seconds,
        "frames_npy_bytes": frames_bytes,
        "cache_bytes": cache_bytes,
        "pixel_bytes": int(n * h * w),
        "cache_bytes_per_frame": cache_bytes / n,
        "cache_overhead": cache_bytes / (n * h * w) - 1.0,
        "seed_float32_bytes_per_frame": 4 * h * w,
    }


# -------------------------------------------------------------------------------------- throughput


def _bc_params(batch_size: int, n_stack: int, num_workers: int = 0, cache_on_device: bool = False, **extra):
    from .params import parse_params

    trainer = {"accelerator": "cpu", "num_workers": num_workers, "cache_on_device": cache_on_device}
    trainer.update(extra.pop("trainer", {}))
    values = {"encoder_init": "none", "batch_size": batch_size, "n_stack": n_stack, "trainer": trainer, **extra}
    return parse_params({"bc": values}).bc


def _cycle(datamodule):
    """Endless training batches from the datamodule's real loader (a new epoch whenever one ends)."""
    epoch = 0
    loader = datamodule.train_dataloader()
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _timed_steps(module, optimizer, batches, device, n_warmup: int, n_steps: int, sync) -> float:
    """Train `n_warmup` + `n_steps` steps exactly as Lightning does (transfer, on_after_batch_transfer hook,
    training_step, backward, step); returns the timed steps' seconds."""
    t0 = 0.0
    for i in range(n_warmup + n_steps):
        if i == n_warmup:
            sync()
            t0 = time.perf_counter()
        source, batch = next(batches)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if source is not None:
            batch = source.on_after_batch_transfer(batch, 0)
        loss = module.training_step(batch, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync()
    return time.perf_counter() - t0


def bench_throughput(
    cache_dir: Path, sizes: Sizes, n_stack: int, workers: list[int], device: str = "cpu", **trainer_extra
) -> dict:
    """Samples/s of one BCModule trained through each data path, interleaved over `rounds`; best round counts."""
    import torch

    from .datamodule import FrameDataModule
    from .frame_store import FrameStore
    from .trainer import BCModule
    from .windows import build_samples

    torch.manual_seed(0)
    store = FrameStore.open(cache_dir)
    params = _bc_params(sizes.batch_size, n_stack, trainer=trainer_extra)
    train = build_samples(store, "train", n_stack, params.time_offsets_ms, params.target)
    val = build_samples(store, "val", n_stack, params.time_offsets_ms, params.target)
    module = BCModule(params=params, image_hw=store.image_hw).to(device)
    if params.trainer.channels_last:
        module = module.to(memory_format=torch.channels_last)
    optimizer = module.configure_optimizers()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def through(dm):
        return ((dm, b) for b in _cycle(dm))

    arms = {}
    for w in workers:
        dm = FrameDataModule(store, train, val, sizes.batch_size, 0, num_workers=w)
        arms[f"loader_w{w}"] = (dm, through(dm))
    dm = FrameDataModule(store, train, val, sizes.batch_size, 0, cache_on_device=True)
    arms["resident"] = (dm, through(dm))
    # The upper bound: one batch of the same shape, gathered once, already in memory (and on the device).
    ids = np.arange(min(sizes.batch_size, len(train)))
    flat = store.frames[train.windows[ids].reshape(-1)]
    fixed = {
        "x": torch.from_numpy(np.ascontiguousarray(flat).reshape(len(ids), n_stack, *store.image_hw)).to(device),
        "y": torch.from_numpy(train.labels[ids]).to(device),
    }
    arms["in_memory"] = (None, iter(lambda: (None, fixed), None))

    autocast = (
        torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
        if "bf16" in str(params.trainer.precision)
        else contextlib.nullcontext()
    )
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    with autocast:
        for _ in range(sizes.rounds):
            for name, (_, batches) in arms.items():
                seconds[name].append(_timed_steps(module, optimizer, batches, device, sizes.warmup, sizes.steps, sync))
    samples = sizes.steps * len(ids)
    per_s = {name: samples / min(s) for name, s in seconds.items()}
    best_loader = per_s[f"loader_w{workers[0]}"]
    return {
        "n_stack": n_stack,
        "batch_size": len(ids),
        "steps": sizes.steps,
        "rounds": sizes.rounds,
        "device": device,
        "precision": params.trainer.precision,
        "samples_per_s": per_s,
        "round_seconds": seconds,
        "loader_over_in_memory": best_loader / per_s["in_memory"],
        "resident_over_in_memory": per_s["resident"] / per_s["in_memory"],
        "train_samples": len(train),
    }


# --------------------------------------------------------------------------------------------- RSS


def _rss_child(spec: dict) -> None:
    """One BC run (run_bc) in this fresh process; prints its peak RSS (VmHWM) as the last line of JSON."""
    import tmpretrain.pretrain as pretrain

    from .frame_store import FrameStore

    # Steady state after one full epoch: every page of the store has been read once (both n_stack runs alike).
    store = FrameStore.open(spec["cache_dir"])
    for i in range(0, len(store.frames), 65536):
        np.asarray(store.frames[i : i + 65536]).sum()
    del store

    original = pretrain.build_trainer

    def limited(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.limit_train_batches = spec["batches"]
        trainer.limit_val_batches = spec["batches"]
        return trainer

    pretrain.build_trainer = limited
    params = _bc_params(spec["batch_size"], spec["n_stack"], spec["num_workers"], epochs=1)
    os.environ.setdefault("TQDM_DISABLE", "1")
    t0 = time.perf_counter()
    pretrain.run_bc(params, Path(spec["cache_dir"]), Path("models"), Path("reports"))
    seconds = time.perf_counter() - t0
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    hwm = [int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")]
    print(json.dumps({"vmhwm_bytes": hwm[0] if hwm else None, "seconds": seconds}))


def _run_rss_child(spec: dict, cwd: Path) -> dict:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    child = "import sys; from tmpretrain.bench import main; main(sys.argv[1:])"  # a fresh process: its own peak RSS
    cmd = [sys.executable, "-c", child, "--rss-child", json.dumps(spec)]
    with open(cwd / "child.log", "w+") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the max over all children
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read()
    if proc.returncode != 0:
        raise RuntimeError(f"RSS run at n_stack={spec['n_stack']} failed:\n{out[-3000:]}")
    child = json.loads(out.strip().splitlines()[-1])
    # ru_maxrss is KiB on Linux, bytes on macOS. Linux carries the high-water mark across exec, so a child forked
    # from a big parent (pytest with torch loaded) reports at least the parent's RSS: the child's own VmHWM is the
    # figure where there is one, wait4's elsewhere.
    maxrss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    peak = child["vmhwm_bytes"] or maxrss
    return {"peak_rss_bytes": peak, "vmhwm_bytes": child["vmhwm_bytes"], "wait4_maxrss_bytes": maxrss, **child}


def bench_rss(cache_dir: Path, workdir: Path, sizes: Sizes, num_workers: int) -> dict:
    from .frame_store import FrameStore
    from .params import BCParams
    from .windows import build_samples

    store = FrameStore.open(cache_dir)
    offsets = BCParams().time_offsets_ms
    runs = {}
    for n_stack in (1, 3):
        spec = {
            "cache_dir": str(cache_dir.resolve()),
            "n_stack": n_stack,
            "batch_size": sizes.batch_size,
            "batches": sizes.rss_batches,
            "num_workers": num_workers,
        }
        runs[f"n_stack_{n_stack}"] = {
            **_run_rss_child(spec, workdir / f"rss_n{n_stack}"),
            "window_index_bytes": int(build_samples(store, "train", n_stack, offsets).windows.nbytes),
        }
    one, three = runs["n_stack_1"]["peak_rss_bytes"], runs["n_stack_3"]["peak_rss_bytes"]
    return {
        **runs,
        "store_bytes": int(store.frames.nbytes),
        "batch_size": sizes.batch_size,
        "batches": sizes.rss_batches,
        "num_workers": num_workers,
        "rss_n3_over_n1": three / one,
        "rss_n3_minus_n1_bytes": three - one,
    }


# --------------------------------------------------------------------------------------------- DVC


def _dvc(args: list[str], cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def _dvc_env(workdir: Path) -> dict:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    env.setdefault("DVC_SITE_CACHE_DIR", str(workdir / "dvc-site"))
    return env


def _time_noop_repro(project: Path, env: dict, repeats: int) -> dict:
    _dvc(["status"], project, env)  # warm DVC's state/index databases once, like any repeated invocation
    times, ran = [], 0
    for _ in range(repeats):
        seconds, proc = _dvc(["repro"], project, env)
        if proc.returncode != 0:
            raise RuntimeError(f"`dvc repro` failed in {project}:\n{proc.stdout}\n{proc.stderr}")
        ran += (proc.stdout + proc.stderr).count("Running stage")
        times.append(seconds)
    _, status = _dvc(["status", "--json"], project, env)
    return {
        "repro_seconds": times,
        "dvc_noop_repro_s": statistics.median(times),
        "stages_run": ran,
        "up_to_date_after": status.returncode == 0 and json.loads(status.stdout or "{}") == {},
    }


def _stage_paths(project: Path) -> tuple[list[Path], list[Path]]:
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        stages = list(repo.index.stages)
        deps = [Path(d.fs_path) for s in stages for d in s.deps if not d.def_path.startswith("params")]
        outs = [Path(o.fs_path) for s in stages for o in s.outs]
    return deps, outs


def _placeholder(path: Path) -> None:
    if path.exists():
        return
    if path.suffix:  # a file: metrics JSON, a model file, a missing source file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n" if path.suffix == ".json" else "")
    else:
        path.mkdir(parents=True)
        (path / "placeholder").write_text("")


def bench_dvc(mode: str, replays: Path, cache_dir: Path, workdir: Path, repeats: int = 3) -> dict:
    """No-op `dvc repro` time. `copy`: a throwaway copy of the project's pipeline (dvc.yaml, params.yaml, src/)
    whose data/replays and data/cache are this benchmark's tree and store, every other output a placeholder,
    recorded as up to date with `dvc commit -f`; `inplace`: the project itself, only if `dvc status` is clean."""
    root = project_root()
    if root is None:
        return {"mode": "skipped", "reason": "no project checkout with dvc.yaml next to the installed package"}
    env = _dvc_env(workdir)
    if mode == "inplace":
        _, status = _dvc(["status", "--json"], root, env)
        if status.returncode != 0 or json.loads(status.stdout or "{}") != {}:
            return {"mode": "skipped", "reason": f"`dvc status` in {root} is not clean; run `dvc repro` first"}
        return {"mode": "inplace", "project": str(root), **_time_noop_repro(root, env, repeats)}

    from .params import load_params

    project = workdir / "dvc_project"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        if (root / name).is_file():
            shutil.copy2(root / name, project / name)
    (project / ".dvc").mkdir()
    shutil.copy2(root / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copytree(root / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    params = load_params(project / "params.yaml")
    for src, dst in ((replays, params.data.replays_dir), (cache_dir, params.data.cache_dir)):
        (project / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, project / dst, copy_function=os.link)
    deps, outs = _stage_paths(project)
    missing = sorted({str(p.relative_to(project)) for p in deps + outs if not p.exists()})
    for p in deps + outs:
        _placeholder(p)
    seconds, proc = _dvc(["commit", "-f", "-q"], project, env)
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc commit` failed in {project}:\n{proc.stdout}\n{proc.stderr}")
    n_files = sum(1 for p in (project / params.data.replays_dir).rglob("*") if p.is_file())
    return {
        "mode": "copy",
        "project": str(project),
        "placeholders": missing,
        "replays_files": n_files,
        "commit_seconds": seconds,
        **_time_noop_repro(project, env, repeats),
    }


# ------------------------------------------------------------------------------------------ device


def bench_device(cache_dir: Path, sizes: Sizes, device: str, compile_model: bool) -> dict:
    """The BC model (the agent's encoder + A_head per offset), n_stack 1, fed from the uint8 store resident on
    `device`: per step a random index batch is gathered there, normalised, and trained on. Configurations: fp32,
    bf16 autocast, bf16 + channels_last, (+ torch.compile). Plus the real BCModule/loader path (cache_on_device,
    bf16-mixed, channels_last) for comparison."""
    import torch
    import torch.nn.functional as F

    from .datamodule import resident_frames
    from .frame_store import FrameStore
    from .models import BCModel, normalize
    from .params import BCParams

    store = FrameStore.open(cache_dir)
    p = BCParams()
    frames = resident_frames(store.frames, device)  # as training's cache_on_device does it
    labels = torch.randint(0, 12, (len(frames), len(p.time_offsets_ms)), device=device)
    n, (h, w) = len(frames), store.image_hw
    b = sizes.device_batch_size
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    configs = {"fp32": (False, False, False), "bf16": (True, False, False), "bf16_cl": (True, True, False)}
    if compile_model:
        configs["bf16_cl_compile"] = (True, True, True)
    results = {}
    for name, (bf16, channels_last, compiled) in configs.items():
        torch.manual_seed(0)
        model = BCModel(
            image_hw=(h, w),
            n_stack=1,
            n_offsets=len(p.time_offsets_ms),
            use_actions_head=True,
            dense_hidden_dimension=1024,
            dropout=0.2,
            action_head_dropout=0.1,
            use_floats=False,
        ).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
        step_model = torch.compile(model) if compiled else model
        generator = torch.Generator(device=device).manual_seed(0)

        def step(step_model=step_model, optimizer=optimizer, bf16=bf16, channels_last=channels_last, g=generator):
            idx = torch.randint(0, n, (b,), device=device, generator=g)
            x = normalize(frames[idx].unsqueeze(1), "iqn")
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast(device.split(":")[0], dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with ctx:
                logits = step_model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels[idx].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(3 if device.startswith("cuda") else 1):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(sizes.device_steps):
            step()
        sync()
        results[name] = b * sizes.device_steps / (time.perf_counter() - t0)
    real = bench_throughput(
        cache_dir,
        replace(sizes, batch_size=b, steps=sizes.device_steps, warmup=3 if device.startswith("cuda") else 1, rounds=1),
        1,
        [0],
        device,
        precision="bf16-mixed",
        channels_last=True,
        cache_on_device=True,
    )
    out = {
        "device": device,
        "name": torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor(),
        "batch_size": b,
        "steps": sizes.device_steps,
        "store_on_device_bytes": int(frames.numel()),
        "encoder_samples_per_s": results,
        "bcmodule_samples_per_s": real["samples_per_s"],
    }
    out["device_samples_per_s"] = max(results.values())
    return out


# ------------------------------------------------------------------------------------------ report


def _check(name: str, value) -> dict:
    op, bound = TARGETS[name]
    met = (
        None
        if value is None or (isinstance(value, float) and math.isnan(value))
        else bool({"<": value < bound, "<=": value <= bound, ">=": value >= bound}[op])
    )
    return {"value": value, "target": f"{op} {bound:g}", "met": met}


def _mib(x: float) -> str:
    return f"{x / 2**20:.1f} MiB"


def format_table(r: dict) -> str:
    rows: list[tuple[str, str, str, str]] = []
    ing = r["ingest"]
    rows.append(("ingest frames/s", f"{ing['frames_per_s']:.0f}", "", f"{ing['n_frames']} frames, {ing['workers']} w"))
    h, w = ing["image_hw"]
    rows.append(("cache bytes/frame", f"{ing['cache_bytes_per_frame']:.1f}", "", f"H*W = {h * w}"))
    t = r["targets"]

    def target_row(label: str, key: str, fmt: str) -> None:
        c = t.get(key)
        if c is None:
            return
        shown = "n/a" if c["value"] is None else format(c["value"], fmt)
        rows.append((label, shown, c["target"], {True: "yes", False: "NO", None: "-"}[c["met"]]))

    target_row("cache overhead vs H*W", "cache_overhead", ".4f")
    for thr in r.get("throughput", []):
        for arm, v in thr["samples_per_s"].items():
            rows.append(
                (f"train samples/s n_stack={thr['n_stack']} {arm}", f"{v:.1f}", "", f"batch {thr['batch_size']}")
            )
    target_row("loader / in-memory", "loader_over_in_memory", ".3f")
    if "rss" in r:
        for k in ("n_stack_1", "n_stack_3"):
            rows.append((f"peak RSS BC {k.replace('_', ' ')}", _mib(r["rss"][k]["peak_rss_bytes"]), "", ""))
        target_row("peak RSS n_stack 3 / 1", "rss_n3_over_n1", ".3f")
    if r.get("dvc", {}).get("mode") in ("copy", "inplace"):
        target_row(f"no-op dvc repro s ({r['dvc']['mode']})", "dvc_noop_repro_s", ".2f")
    elif "dvc" in r:
        rows.append(("no-op dvc repro", "skipped", "", r["dvc"].get("reason", "")))
    if "device" in r:
        for cfg, v in r["device"]["encoder_samples_per_s"].items():
            rows.append((f"{r['device']['device']} encoder samples/s {cfg}", f"{v:,.0f}", "", ""))
        for arm, v in r["device"]["bcmodule_samples_per_s"].items():
            rows.append((f"{r['device']['device']} BCModule samples/s {arm}", f"{v:,.0f}", "", ""))
        target_row("device samples/s (best)", "device_samples_per_s", ",.0f")
    widths = [max(len(row[i]) for row in rows + [("figure", "value", "target", "met")]) for i in range(4)]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(("figure", "value", "target", "met"), widths, strict=True))]
    lines.append("  ".join("-" * wd for wd in widths))
    lines += ["  ".join(c.ljust(wd) for c, wd in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(args: argparse.Namespace) -> dict:
    sizes = QUICK if args.quick else Sizes()
    overrides = {f.name: getattr(args, f.name) for f in fields(Sizes) if getattr(args, f.name, None) is not None}
    sizes = replace(sizes, **overrides)
    work_parent = Path(args.workdir) if args.workdir else None
    if work_parent:
        work_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tmpretrain-bench-", dir=work_parent))
    t_start = time.perf_counter()
    result: dict = {"quick": args.quick, "sizes": asdict(sizes), "workdir": str(workdir)}
    try:
        result["machine"] = _machine()
        if args.replays:
            replays = Path(args.replays)
            result["tree"] = {"source": str(replays)}
        else:
            replays = workdir / "replays"
            t0 = time.perf_counter()
            n = write_tree(replays, sizes.tracks, sizes.replays_per_track, sizes.frames_per_replay, sizes.capture_size)
            result["tree"] = {"source": "generated", "frames": n, "write_seconds": time.perf_counter() - t0}
        cache_dir = workdir / "cache"
        timings = result["section_seconds"] = {}

        def section(name: str, fn, *fn_args):
            t0 = time.perf_counter()
            result[name] = fn(*fn_args)
            timings[name] = time.perf_counter() - t0

        section("ingest", bench_ingest, replays, cache_dir, sizes.image_size, args.ingest_workers)
        section("throughput", lambda: [bench_throughput(cache_dir, sizes, k, args.workers) for k in args.n_stack])
        if not args.no_rss:
            section("rss", bench_rss, cache_dir, workdir, sizes, args.workers[0])
        if args.dvc != "off":
            section("dvc", bench_dvc, args.dvc, replays, cache_dir, workdir)
        device = args.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else None
        if device and device != "off":
            section("device", bench_device, cache_dir, sizes, device, args.compile)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    targets = {"cache_overhead": _check("cache_overhead", result["ingest"]["cache_overhead"])}
    if result.get("throughput"):
        targets["loader_over_in_memory"] = _check(
            "loader_over_in_memory", min(t["loader_over_in_memory"] for t in result["throughput"])
        )
    if "rss" in result:
        targets["rss_n3_over_n1"] = _check("rss_n3_over_n1", result["rss"]["rss_n3_over_n1"])
    if result.get("dvc", {}).get("mode") in ("copy", "inplace"):
        targets["dvc_noop_repro_s"] = _check("dvc_noop_repro_s", result["dvc"]["dvc_noop_repro_s"])
    if "device" in result and result["device"]["device"].startswith("cuda"):
        targets["device_samples_per_s"] = _check("device_samples_per_s", result["device"]["device_samples_per_s"])
    result["targets"] = targets
    result["total_seconds"] = time.perf_counter() - t_start
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="tmpretrain bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized run (well under a minute on 2 cores)")
    ap.add_argument("--out", default="bench/results.json", help="JSON output path (default bench/results.json)")
    ap.add_argument("--replays", help="ingest this capture tree instead of generating one")
    ap.add_argument("--workdir", help="parent of the temporary working directory (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--n-stack", type=int, nargs="+", default=[1], help="n_stack values for the throughput arms")
    ap.add_argument("--workers", type=int, nargs="+", default=[0], help="DataLoader num_workers arms (first: RSS)")
    ap.add_argument("--ingest-workers", type=int, default=2, help="data.workers for the ingest measurement")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS runs")
    ap.add_argument("--dvc", choices=("copy", "inplace", "off"), default="copy", help="no-op `dvc repro` where")
    ap.add_argument("--device", default="auto", help="device section: auto (cuda if present), off, cuda, cpu")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile in the device section")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    for f in fields(Sizes):
        ap.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.rss_child:
        _rss_child(json.loads(args.rss_child))
        return None
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    print(format_table(result))
    print(f"\n{result['total_seconds']:.0f} s; written to {out}")
    return result
