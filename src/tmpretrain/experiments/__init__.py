"""The original study's runs as named DVC experiments (presets.yaml -> `dvc exp run`), and the table that compares them.

    tmpretrain list | show v1.2 | run v1.2 [-S k=v ...] | queue a-head | table [NAMES] [--csv|--md] | compare FAMILY
    (`tmpretrain --help` lists them all)

Nothing here trains or stores anything: DVC runs the pipeline and keeps every experiment (docs/experiments.md).
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pandas as pd

from ..errors import PretrainError
from ..locks import workspace_busy
from ..params import MAX_PARAMS_BYTES, PARAMS_FILE, flatten, load_params, read_params_file
from ..yamlio import YamlError, parse_yaml, read_yaml

PRESETS_FILE = Path("presets.yaml")


class PresetError(PretrainError):
    pass


def load_presets(path: Path | str = PRESETS_FILE) -> dict:
    """presets.yaml read as DVC reads params.yaml (YAML 1.2; a key twice or an alias refused); PresetError else."""
    try:
        data = read_yaml(path, MAX_PARAMS_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    except YamlError as exc:
        raise PresetError(f"{path}: not valid YAML ({str(exc)[:300]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("presets"), dict):
        raise PresetError(f"{path}: expected a mapping with a `presets` mapping")
    return data


def runnable(data: dict) -> list[str]:
    return [name for name in data["presets"] if not name.startswith("_")]


def override_key(override: str) -> str:
    key, sep, _ = override.partition("=")
    if not sep or not key:
        raise PresetError(f"override {override!r} is not key=value")
    return key.lstrip("+~")


def resolve(data: dict, name: str, _seen: tuple[str, ...] = ()) -> list[str]:
    """The preset's `-S` overrides in order, inherited ones first; a later override of a key replaces the
    earlier one in place of the earlier one's position (so each key appears once)."""
    presets = data["presets"]
    if name not in presets:
        raise PresetError(f"unknown preset {name!r}; known: {', '.join(runnable(data))}")
    if name in _seen:
        raise PresetError(f"preset {name!r} extends itself ({' -> '.join((*_seen, name))})")
    spec = presets[name] or {}
    merged: dict[str, str] = {}
    for parent in spec.get("extends", []) or []:
        for ov in resolve(data, parent, (*_seen, name)):
            merged[override_key(ov)] = ov
    for ov in spec.get("set", []) or []:
        key = override_key(str(ov))
        merged.pop(key, None)
        merged[key] = str(ov)
    return list(merged.values())


def select(data: dict, targets: list[str]) -> list[str]:
    """Preset names from `all`, family names or preset names, in order, each once."""
    out: list[str] = []
    for t in targets:
        if t == "all":
            names = runnable(data)
        elif t in (data.get("families") or {}):
            names = data["families"][t]
        else:
            resolve(data, t)  # raises for unknown names
            names = [t]
        out += [n for n in names if n not in out]
    return out


def exp_run_command(data: dict, name: str, queue: bool = False, extra: list[str] | None = None) -> list[str]:
    cmd = ["dvc", "exp", "run", "-n", name]
    if queue:
        cmd.append("--queue")
    for ov in resolve(data, name):
        cmd += ["-S", ov]
    return cmd + list(extra or [])


def stray_params(overrides: list[str], params_file: Path = Path("params.yaml")) -> list[str]:
    """Keys where the workspace params.yaml differs from the committed one and no override sets them: a run
    would silently inherit them (e.g. left over from an earlier `dvc exp run` in the workspace)."""
    try:
        committed = subprocess.run(
            ["git", "show", f"HEAD:{params_file.as_posix()}"], capture_output=True, text=True, check=True
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return []
    try:
        committed_params = parse_yaml(committed)  # as DVC reads it, like the workspace file below
    except YamlError:
        return []
    if not isinstance(committed_params, dict | None):  # not a params mapping: nothing to compare
        return []
    head = flatten(committed_params)
    work = flatten(read_params_file(params_file))
    covered = {override_key(o) for o in overrides}
    differing = {k for k in head.keys() | work.keys() if head.get(k) != work.get(k)}
    return sorted(k for k in differing if k not in covered and not any(k.startswith(c + ".") for c in covered))


def check_overrides(overrides: list[str], params_file: Path = PARAMS_FILE) -> dict:
    """The params a `dvc exp run -S ...` would run with, checked as the validate stage checks them, before DVC
    writes them into params.yaml (where a refused value would stay for every later run, queued ones included) or
    checks out the workspace's outputs (where a path param naming an existing folder would be lost). The overrides
    are applied by DVC's own code, to a copy; returns that copy's params, flattened as `dvc exp show` lists them."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    from ..params import check_pipeline_params

    ours = [o.split(":", 1)[1] if o.startswith(f"{params_file}:") else o for o in overrides]
    ours = [o for o in ours if ":" not in o.partition("=")[0]]  # `-S other.yaml:key=value`: not params.yaml's
    read_params_file(params_file)  # a missing or unreadable params.yaml is its own one-line error
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / params_file.name
        shutil.copyfile(params_file, copy)
        try:
            apply_overrides(copy, ours)
        except InvalidArgumentError as exc:
            reason = " ".join(str(exc.__cause__ or exc).split())  # Hydra's messages span lines
            raise PresetError(f"-S {' -S '.join(ours)}: {reason} (nothing ran, {params_file} is unchanged)") from None
        try:
            check_pipeline_params(load_params(copy))
        except PretrainError as exc:
            raise PresetError(f"{exc} (with -S {' -S '.join(ours)}: nothing ran, {params_file} is unchanged)") from None
        return flatten(read_params_file(copy))


def check_workspace_free(dvc_args: list[str]) -> None:
    """A run in the workspace (not --queue / --temp, which run in a copy) while another runs there would have DVC
    write its -S values into the params.yaml the other is running with: refused before anything is written."""
    if any(a in ("--queue", "--temp") for a in dvc_args):
        return
    busy = workspace_busy()
    if busy:
        raise PresetError(
            f"another run holds this workspace: {busy}; nothing ran, params.yaml is unchanged. Queue this one "
            "instead (add --queue, then dvc queue start), or wait for it to finish"
        )


def exp_run(dvc_args: list[str]) -> int:
    """`dvc exp run DVC_ARGS`, the workspace free and its -S overrides checked first (check_overrides)."""
    check_workspace_free(dvc_args)
    check_overrides(_extra_overrides(dvc_args))
    return run_command(["dvc", "exp", "run", *dvc_args])


def _extra_overrides(extra: list[str]) -> list[str]:
    out = []
    for i, arg in enumerate(extra):
        if arg in ("-S", "--set-param") and i + 1 < len(extra):
            out.append(extra[i + 1])
        elif arg.startswith("--set-param="):
            out.append(arg.split("=", 1)[1])
    return out


def quote(cmd: list[str]) -> str:
    """shlex.join, but `k='01'` reads as "k='01'" rather than 'k='"'"'01'"'"''."""
    return " ".join(f'"{a}"' if "'" in a and not set('"$`\\!') & set(a) else shlex.quote(a) for a in cmd)


def run_command(cmd: list[str], dry_run: bool = False) -> int:
    """Print `$ cmd` and run it (not with dry_run); its exit status."""
    print("$ " + quote(cmd), flush=True)
    return 0 if dry_run else subprocess.run(cmd).returncode


def _check_workspace(data: dict, names: list[str], extra: list[str], allow_dirty: bool) -> None:
    if allow_dirty:
        return
    for name in names:
        stray = stray_params(resolve(data, name) + _extra_overrides(extra))
        if stray:
            raise PresetError(
                f"params.yaml differs from the last commit in {', '.join(stray)}, which preset {name!r} does not "
                "set: the experiment would inherit them. Restore them (git checkout params.yaml), pass them with "
                "-S, or add --allow-dirty."
            )


def run_presets(
    data: dict,
    targets: list[str],
    queue: bool = False,
    extra: list[str] | None = None,
    dry_run: bool = False,
    allow_dirty: bool = False,
) -> int:
    """`dvc exp run -n NAME [--queue] -S ...` for each selected preset, one after the other; the first failing
    command's exit status."""
    extra = list(extra or [])
    names = select(data, targets)
    _check_workspace(data, names, extra, allow_dirty or dry_run)
    if not dry_run:
        check_workspace_free(extra + ["--queue"] * queue)
    for name in names if not dry_run else []:  # a dry run only prints (and may run outside a project)
        check_overrides(resolve(data, name) + _extra_overrides(extra))
    for name in names:
        rc = run_command(exp_run_command(data, name, queue, extra), dry_run)
        if rc:
            return rc
    if queue:
        print("queued; start the workers with: dvc queue start  (watch: dvc queue status)")
    return 0


def family_members(data: dict, targets: list[str]) -> list[str]:
    """Family names expanded to their presets; anything else (experiment names, revisions) kept as given."""
    families = data.get("families") or {}
    out: list[str] = []
    for t in targets:
        out += [n for n in families.get(t, [t]) if n not in out]
    return out


# ------------------------------------------------------------------------------------ comparison table

BC_METRICS = "reports/bc/metrics.json"
EVAL_METRICS = "reports/eval/metrics.json"
RL_METRICS = "reports/rl/metrics.json"
WORKSPACE = "workspace"

# Text and Markdown headers of params: the group prefix `bc.` dropped, long key names shortened.
_SHORT_KEYS = {
    "image_normalization": "norm",
    "time_offsets_ms": "offsets",
    "offset_weights": "weights",
    "export_offset_ms": "export_ms",
    "use_actions_head": "A_head",
    "action_head_dropout": "head_drop",
    "dropout": "drop",
    "dense_hidden_dimension": "hidden",
    "weight_decay": "wd",
    "early_stopping.enabled": "early_stop",
    "early_stopping.patience": "patience",
    "early_stopping.monitor": "es_monitor",
    "selection.metric": "select",
    "encoder_init": "init",
    "class_weighting": "class_w",
}
# Columns shown when some row has them: (CSV header, text header, metrics file, paths tried in order). The
# exported epoch's numbers come first (best/...: what models/bc holds), the last epoch's only as a fallback.
_METRIC_COLUMNS = [
    ("val/loss", "val loss", BC_METRICS, ("best/val/loss", "val/loss")),
    ("val/acc", "val acc", BC_METRICS, ("best/val/acc", "val/acc")),
    ("val/main_actions_acc", "main acc", BC_METRICS, ("best/val/main_actions_acc", "val/main_actions_acc")),
]
# Closed-loop driving of the exported policy (stage evaluate), and the test split once pretrain_bc scores one.
_TRAILING_COLUMNS = [
    ("test/loss", "test loss", BC_METRICS, ("best/test/loss", "test/loss")),
    ("test/acc", "test acc", BC_METRICS, ("best/test/acc", "test/acc")),
    ("test/main_actions_acc", "test main", BC_METRICS, ("best/test/main_actions_acc", "test/main_actions_acc")),
    ("policy/completion_rate", "completion", EVAL_METRICS, ("policy/completion_rate",)),
    ("policy/progress", "progress", EVAL_METRICS, ("policy/progress",)),
    ("policy/lap_time_ratio", "lap time ratio", EVAL_METRICS, ("policy/lap_time_ratio",)),
    # Downstream RL (stage rl): does the export help the agent's RL? The bc arm's area under its progress curve
    # minus scratch's, paired by seed and track (docs/rl.md); > 0 where the pretraining helped over the budget.
    ("rl/bc_minus_scratch/auc_progress", "rl bc-scratch", RL_METRICS, ("vs_scratch/bc/auc_progress",)),
    ("rl/bc_dqfd_minus_scratch/auc_progress", "rl dqfd-scratch", RL_METRICS, ("vs_scratch/bc_dqfd/auc_progress",)),
]


def lookup(d, path: str):
    """A value of nested metrics by `/` path, where keys may themselves hold `/` (best: {"val/acc": ...}); None
    when absent."""
    if not isinstance(d, dict):
        return None
    if path in d:
        return d[path]
    parts = path.split("/")
    for i in range(len(parts) - 1, 0, -1):
        head = "/".join(parts[:i])
        if isinstance(d.get(head), dict):
            found = lookup(d[head], "/".join(parts[i:]))
            if found is not None:
                return found
    return None


def exp_show(extra: list[str] | None = None, cwd: Path | str | None = None) -> list:
    """`dvc exp show --json` (the workspace, its baseline commit and their experiments; extra args to dvc)."""
    cmd = ["dvc", "exp", "show", "--json", *(extra or [])]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError:
        raise PresetError("dvc is not on PATH (activate the project's environment)") from None
    if proc.returncode:
        raise PresetError(f"{quote(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout or "[]")


def experiment_rows(show: list) -> list[dict]:
    """One row per workspace, commit and experiment of `dvc exp show --json`: name, rev, the baseline commit, the
    timestamp, the state (queued, running, success, failed), flattened params and each metrics file's
    contents."""
    rows = []

    def add(entry: dict, name: str, baseline: str, state: str) -> None:
        data = entry.get("data") or {}
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        metrics = {path: (v or {}).get("data") or {} for path, v in (data.get("metrics") or {}).items()}
        row = {"name": name, "rev": entry.get("rev"), "baseline": baseline, "timestamp": data.get("timestamp")}
        rows.append(row | {"state": state, "params": flatten(params), "metrics": metrics})

    for baseline in show:
        rev = baseline.get("rev") or ""
        add(baseline, WORKSPACE if rev == WORKSPACE else baseline.get("name") or rev[:7], rev, "success")
        for exp in baseline.get("experiments") or []:
            # queued and running experiments show the baseline's metrics: only `success` rows have their own
            state = (exp.get("executor") or {}).get("state") or "success"
            for entry in exp.get("revs") or []:
                add(entry, entry.get("name") or exp.get("name") or (entry.get("rev") or "")[:7], rev, state)
    return rows


def _param_text(value) -> str:
    if isinstance(value, list):
        return ",".join(_param_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def short_param(key: str) -> str:
    group, _, rest = key.partition(".")
    rest = _SHORT_KEYS.get(rest, rest)
    return rest if group == "bc" else f"{group}.{rest}"


def _offset_ms(label: str) -> float:
    try:
        return float(label.removesuffix("ms"))
    except ValueError:
        return math.inf


def comparison_table(rows: list[dict], names: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per experiment with BC metrics: the params that differ between the rows, the exported epoch, its
    val loss / accuracy / main-actions accuracy / per-offset accuracy, then test and driving metrics where any
    row has them. Returns the frame (CSV headers) and the short text header of each column."""
    if names:
        by_name = {r["name"]: r for r in rows}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise PresetError(f"no experiment or revision named {', '.join(unknown)} in dvc exp show")
        rows = [by_name[n] for n in names]
    # queued and running experiments would show their baseline's numbers under their own name
    rows = [r for r in rows if r["metrics"].get(BC_METRICS) and r.get("state", "success") == "success"]
    if not rows:
        raise PresetError(f"no experiment has {BC_METRICS} yet (run one: tmpretrain run v2)")
    index = pd.Index([r["name"] for r in rows], name="experiment")
    table: dict[str, list] = {}
    short: dict[str, str] = {}

    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))  # params.yaml's order
    for key in keys:
        values = [_param_text(r["params"].get(key)) for r in rows]
        if len(set(values)) > 1:
            table[key], short[key] = values, short_param(key)

    bc = [r["metrics"][BC_METRICS] for r in rows]
    table["exported_epoch"] = pd.array([lookup(m, "best/epoch") for m in bc], dtype="Int64")
    table["epochs_run"] = pd.array([m.get("epochs_run") for m in bc], dtype="Int64")
    short["exported_epoch"], short["epochs_run"] = "epoch", "of"

    def add_metric(column: str, header: str, path_file: str, paths: tuple[str, ...]) -> None:
        values = []
        for r in rows:
            m = r["metrics"].get(path_file) or {}
            values.append(next((v for p in paths if isinstance(v := lookup(m, p), int | float)), None))
        if any(v is not None for v in values):
            table[column], short[column] = values, header

    for column in _METRIC_COLUMNS:
        add_metric(*column)
    offsets = []
    for m in bc:
        for key in m.get("best") or {}:
            label = key.removeprefix("val/acc_offset/")
            if label != key and label not in offsets:
                offsets.append(label)
    if len(offsets) > 1:  # with one offset, its accuracy is val acc
        for label in sorted(offsets, key=_offset_ms):
            add_metric(f"val/acc_offset/{label}", label, BC_METRICS, (f"best/val/acc_offset/{label}",))
    for column in _TRAILING_COLUMNS:
        add_metric(*column)
    return pd.DataFrame(table, index=index), short


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(df: pd.DataFrame, short: dict[str, str], fmt: str = "text", width: int = 120) -> str:
    """The comparison as text (blocks of columns no wider than `width`, the name repeated), Markdown or CSV."""
    if fmt == "csv":
        return df.to_csv()
    view = df.copy()
    if "exported_epoch" in view:  # "23/25": exported epoch (0-based) / epochs run
        view["exported_epoch"] = [
            f"{_cell(e)}/{_cell(n)}" for e, n in zip(df["exported_epoch"], df["epochs_run"], strict=True)
        ]
        view = view.drop(columns="epochs_run")
    view = view.map(_cell).rename(columns=short)
    if fmt == "md":
        return view.to_markdown(disable_numparse=True) + "\n"
    text = view.to_string(line_width=width)
    renamed = ", ".join(f"{short[k]} = {k}" for k in df.columns if "." in k and short.get(k) != k)
    notes = ["epoch: exported epoch (0-based) / epochs run; accuracies and val loss of the exported epoch"]
    if renamed:
        notes.append(f"params: {renamed}")
    return text + "\n\n" + "\n".join(textwrap.fill(n, width, subsequent_indent="  ") for n in notes) + "\n"
