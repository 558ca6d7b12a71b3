"""One revision's results, read through DVC: params, BC and Level 0 metrics and curves, confusion, baselines."""

from __future__ import annotations

import atexit
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..actions import ACTION_NAMES
from ..errors import PretrainError
from ..frame_store import FrameStore
from ..metrics import majority_baseline, offset0_baseline, offset_label, previous_action_baseline
from ..windows import build_samples
from ..yamlio import YamlError, parse_yaml

BC_DIR = "reports/bc"
CURVES_DIR = f"{BC_DIR}/plots/metrics"
CONFUSION_FILE = f"{BC_DIR}/plots/sklearn/confusion_matrix.json"
VIS_METRICS = "reports/vis/metrics.json"
VIS_CURVES_DIR = "reports/vis/plots/metrics"
# A grid of val frames above their reconstructions, saved by pretrain_vis for the autoencoder / VAE tasks
# (the decoder is not exported, so the report cannot make one itself).
VIS_RECONSTRUCTIONS = "reports/vis/samples/reconstructions.png"
WORKSPACE = "workspace"


class ReportError(PretrainError):
    pass


_REPOS: dict = {}


def _close_repos() -> None:
    """Close the repos before interpreter teardown: dulwich's pack finalizers print "Exception ignored ...
    sys.meta_path is None" when they run that late."""
    while _REPOS:
        _REPOS.popitem()[1].close()


def _repo(root: Path):
    """One open DVC repo per root for the whole process (closing it invalidates filesystems built on it)."""
    from dvc.repo import Repo

    key = str(Path(root).resolve())
    if key not in _REPOS:
        if not _REPOS:
            atexit.register(_close_repos)
        _REPOS[key] = Repo(key)
    return _REPOS[key]


class _Reader:
    """Reads repository files at one revision: the working tree for `workspace`, DVC's view otherwise."""

    def __init__(self, rev: str, root: Path):
        self.rev = rev
        self.root = root
        self.sha = None
        self.fs = None
        if rev != WORKSPACE:
            from dvc.api import DVCFileSystem
            from dvc.scm import RevError, resolve_rev

            repo = _repo(root)
            try:
                self.sha = resolve_rev(repo.scm, rev)
            except RevError as exc:
                raise ReportError(f"{rev!r} is neither an experiment nor a git revision: {exc}") from None
            self.fs = DVCFileSystem(str(Path(root).resolve()), rev=self.sha)

    def uncached_outputs(self, paths: tuple[str, ...]) -> list[str]:
        """Those of `paths` that are DVC outputs at this revision (its dvc.lock) whose data is not in the local DVC
        cache. DVC's own view of such a directory is "does not exist" or a DataIndexDirError traceback; a fresh
        clone has no outputs of any revision in its cache."""
        if self.fs is None or not self.exists("dvc.lock"):
            return []
        lock = parse_yaml(self.read_text("dvc.lock"), aliases=True) or {}  # as DVC wrote it
        cache = _repo(self.root).cache.local
        return [
            out["path"]
            for stage in (lock.get("stages") or {}).values()
            for out in stage.get("outs") or []
            if out.get("path") in paths and out.get("md5") and not cache.exists(out["md5"])
        ]

    def how_to_fetch(self) -> str:
        """The command that brings this revision's outputs into the cache: experiments live in their own refs."""
        from scmrepo.exceptions import RevError

        try:
            _repo(self.root).scm.resolve_rev(self.rev)
        except RevError:  # not a branch, tag or commit of git: an experiment's name
            return f"`dvc exp pull <git remote> {self.rev}`"
        return f"`dvc pull` with {self.rev} checked out, or `dvc fetch --all-commits`"

    def exists(self, path: str) -> bool:
        return (self.root / path).exists() if self.fs is None else self.fs.exists(path)

    def read_text(self, path: str) -> str:
        if self.fs is None:
            return (self.root / path).read_text(encoding="utf-8")
        return self.fs.read_text(path, encoding="utf-8")

    def read_bytes(self, path: str) -> bytes:
        return (self.root / path).read_bytes() if self.fs is None else self.fs.read_bytes(path)

    def find(self, directory: str, suffix: str) -> list[str]:
        """Files under `directory` ending in `suffix`, as paths relative to the repository root."""
        if self.fs is None:
            base = self.root / directory
            return (
                sorted(p.relative_to(self.root).as_posix() for p in base.rglob(f"*{suffix}")) if base.is_dir() else []
            )
        if not self.fs.exists(directory):
            return []
        return sorted(p.lstrip("/") for p in self.fs.find(directory) if p.endswith(suffix))


@dataclass
class Run:
    """One revision's results."""

    label: str
    rev: str
    sha: str | None
    params: dict
    metrics: dict
    vis_metrics: dict
    curves: pd.DataFrame  # index: epoch; columns: metric names ("val/loss", "val/acc_action/coast", ...)
    confusion: pd.DataFrame | None
    vis_curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # Level 0, same layout
    reconstructions_png: bytes | None = None
    baselines: dict = field(default_factory=dict)

    @property
    def offsets(self) -> list[int]:
        return [int(d) for d in self.params["bc"]["time_offsets_ms"]]

    @property
    def export_offset(self) -> int:
        return int(self.params["bc"].get("export_offset_ms", 0))

    @property
    def exported_epoch(self) -> int | None:
        """The epoch whose weights were exported (bc.selection), as pretrain_bc recorded it."""
        epoch = (self.metrics.get("best") or {}).get("epoch")
        return None if epoch is None else int(epoch)

    @property
    def vis_exported_epoch(self) -> int | None:
        epoch = (self.vis_metrics.get("best") or {}).get("epoch")
        return None if epoch is None else int(epoch)


def read_curves(reader: _Reader, directory: str) -> pd.DataFrame:
    """DVCLive's per-epoch TSVs under `directory` as one frame: index epoch, one column per metric path."""
    columns = {}
    for path in reader.find(directory, ".tsv"):
        name = path[len(directory) + 1 : -len(".tsv")]
        df = pd.read_csv(io.StringIO(reader.read_text(path)), sep="\t")
        value_col = [c for c in df.columns if c not in ("step", "timestamp")][-1]
        columns[name] = pd.Series(df[value_col].to_numpy(dtype=float), index=df["step"].to_numpy(dtype=int))
    curves = pd.DataFrame(columns).sort_index()
    curves.index.name = "epoch"
    return curves


def _read_confusion(reader: _Reader) -> pd.DataFrame | None:
    if not reader.exists(CONFUSION_FILE):
        return None
    rows = json.loads(reader.read_text(CONFUSION_FILE))
    if isinstance(rows, dict):  # {"<path>": [...]} in some dvclive versions
        rows = next(iter(rows.values()))
    df = pd.DataFrame(rows)
    if df.empty:
        return None
    cm = pd.crosstab(df["actual"], df["predicted"])
    return cm.reindex(index=list(ACTION_NAMES), columns=list(ACTION_NAMES), fill_value=0)


def _label_store(reader: _Reader, cache_dir: str) -> FrameStore:
    """The frame store's index and timelines at this revision, without reading any frames."""
    meta = json.loads(reader.read_text(f"{cache_dir}/cache_meta.json"))
    with np.load(io.BytesIO(reader.read_bytes(f"{cache_dir}/index.npz"))) as index:
        arrays = {k: index[k] for k in index.files}
    return FrameStore(
        path=Path(cache_dir),
        meta=meta,
        frames=np.broadcast_to(np.zeros((1, 1, 1), dtype=np.uint8), (int(meta["n_frames"]), 1, 1)),
        timelines=np.load(io.BytesIO(reader.read_bytes(f"{cache_dir}/timelines.npy"))),
        floats=None,
        **arrays,
    )


def compute_baselines(store: FrameStore, offsets: list[int], target: str) -> dict:
    """Val-split baselines per offset label: majority class, repeat the previous frame's action, and (for d != 0)
    the 0 ms label used as the prediction for offset d."""
    all_offsets = sorted(set(offsets) | {0})
    samples = build_samples(store, "val", 1, all_offsets, target)
    labels, zero = samples.labels, samples.labels[:, all_offsets.index(0)]
    out = {}
    for d in offsets:
        col = labels[:, all_offsets.index(d)]
        out[offset_label(d)] = {
            "majority": majority_baseline(col),
            "previous_action": previous_action_baseline(col, samples.replay),
            "offset0_label": offset0_baseline(zero, col) if d != 0 else math.nan,
        }
    return out


_BASELINE_CACHE: dict = {}


def _baselines(reader: _Reader, run: Run) -> dict:
    cache_dir = str(run.params["data"]["cache_dir"])
    try:
        meta = json.loads(reader.read_text(f"{cache_dir}/cache_meta.json"))
        key = (
            meta["source"]["content_hash"],
            json.dumps(meta.get("preprocessing"), sort_keys=True),
            json.dumps(meta.get("split"), sort_keys=True),
            tuple(run.offsets),
            run.params["bc"]["target"],
        )
        if key not in _BASELINE_CACHE:
            store = _label_store(reader, cache_dir)
            _BASELINE_CACHE[key] = compute_baselines(store, run.offsets, run.params["bc"]["target"])
        return _BASELINE_CACHE[key]
    except (FileNotFoundError, KeyError, OSError) as exc:
        print(f"warning: {reader.rev}: no baselines ({cache_dir} unreadable: {exc})", file=sys.stderr)
        return {}


# The DVC-cached outputs a report and `tmpretrain plots` read (metrics.json and the confusion matrix are in git).
CACHED_INPUTS = (CURVES_DIR, VIS_CURVES_DIR, "reports/vis/samples")


def check_outputs_cached(revs: list[str], root: Path | str = ".") -> None:
    """One line naming a revision whose results are not in this clone's DVC cache, and how to get them."""
    for rev in revs:
        reader = _Reader(rev, Path(root))
        missing = reader.uncached_outputs(CACHED_INPUTS)
        if missing:
            them = "them" if len(missing) > 1 else "it"
            raise ReportError(
                f"{rev}: {', '.join(missing)} not in this clone's DVC cache; get {them} with {reader.how_to_fetch()}"
            )


def load_run(rev: str, root: Path | str = ".", label: str | None = None, baselines: bool = True) -> Run:
    root = Path(root)
    check_outputs_cached([rev], root)
    reader = _Reader(rev, root)
    try:
        params = parse_yaml(reader.read_text("params.yaml"))  # the values `dvc exp show` shows
        metrics = json.loads(reader.read_text(f"{BC_DIR}/metrics.json"))
    except FileNotFoundError as exc:
        raise ReportError(f"{rev}: {exc.filename or exc} not found; has pretrain_bc run there?") from None
    except YamlError as exc:
        raise ReportError(f"{rev}: params.yaml is not valid YAML: {exc}") from None
    curves = read_curves(reader, CURVES_DIR)
    if curves.empty:
        raise ReportError(f"{rev}: no per-epoch curves under {CURVES_DIR} (has pretrain_bc run there?)")
    run = Run(
        label=label or rev,
        rev=rev,
        sha=reader.sha,
        params=params,
        metrics=metrics,
        vis_metrics=json.loads(reader.read_text(VIS_METRICS)) if reader.exists(VIS_METRICS) else {},
        curves=curves,
        confusion=_read_confusion(reader),
        vis_curves=read_curves(reader, VIS_CURVES_DIR),
        reconstructions_png=reader.read_bytes(VIS_RECONSTRUCTIONS) if reader.exists(VIS_RECONSTRUCTIONS) else None,
    )
    if baselines:
        run.baselines = _baselines(reader, run)
    return run


def load_runs(revs: list[str], root: Path | str = ".", baselines: bool = True) -> list[Run]:
    revs = revs or [WORKSPACE]
    return [load_run(rev, root, baselines=baselines) for rev in revs]
