"""The seed's runs as named DVC experiments: a thin layer that turns presets.yaml into `dvc exp run` commands.

    python -m tmpretrain.experiments list                      the presets and their families
    python -m tmpretrain.experiments show v1.2                 the exact `dvc exp run` command of a preset
    python -m tmpretrain.experiments run v1.2 [-S k=v ...]     run it now as experiment `v1.2` (extra args go to dvc)
    python -m tmpretrain.experiments queue all                 queue every preset (then: dvc queue start)
    python -m tmpretrain.experiments queue a-head              queue one family (or list preset names)
    python -m tmpretrain.experiments table [--csv] [...]       `dvc exp show` with the headline columns only
    python -m tmpretrain.experiments compare normalisation     the table, plots and report of one family

Nothing here trains or stores anything: DVC runs the pipeline and keeps every experiment (docs/experiments.md).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from .errors import PretrainError
from .params import flatten

PRESETS_FILE = Path("presets.yaml")

# `dvc exp show --drop '.*' --keep ...`: the headline columns of the seed's analysis. Column names are the flattened
# metric keys, prefixed with their file only where two files share a key (e.g. val.loss of vis and bc).
_BC = r"(reports/bc/metrics\.json:)?"
HEADLINE_KEEP = [
    r"Experiment$",
    r"rev$",
    r"typ$",
    r"parent$",
    r"Created$",
    _BC + r"val\.(loss|acc|main_actions_acc)$",
    _BC + r"val\.acc_offset\.",
    _BC + r"best\.(epoch|value|val/loss|val/acc|val/main_actions_acc)$",
    _BC + r"epochs_run$",
    r"vis\.image_normalization$",
    r"bc\.(image_normalization|target|time_offsets_ms|n_stack|use_actions_head|dropout|action_head_dropout"
    r"|epochs|lr|weight_decay|early_stopping\.enabled)$",
]


class PresetError(PretrainError):
    pass


def load_presets(path: Path | str = PRESETS_FILE) -> dict:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
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


def table_command(csv: bool = False) -> list[str]:
    cmd = ["dvc", "exp", "show", "--no-pager", "--drop", ".*"]
    for pattern in HEADLINE_KEEP:
        cmd += ["--keep", pattern]
    if csv:
        cmd.append("--csv")
    return cmd


def stray_params(overrides: list[str], params_file: Path = Path("params.yaml")) -> list[str]:
    """Keys where the workspace params.yaml differs from the committed one and no override sets them: a run
    would silently inherit them (e.g. left over from an earlier `dvc exp run` in the workspace)."""
    try:
        committed = subprocess.run(
            ["git", "show", f"HEAD:{params_file.as_posix()}"], capture_output=True, text=True, check=True
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return []
    head = flatten(yaml.safe_load(committed))
    work = flatten(yaml.safe_load(params_file.read_text(encoding="utf-8")))
    covered = {override_key(o) for o in overrides}
    differing = {k for k in head.keys() | work.keys() if head.get(k) != work.get(k)}
    return sorted(k for k in differing if k not in covered and not any(k.startswith(c + ".") for c in covered))


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


def _run(cmd: list[str], dry_run: bool) -> int:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tmpretrain.experiments", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=str(PRESETS_FILE))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the presets and their families")
    p = sub.add_parser("show", help="print the dvc exp run command of presets")
    p.add_argument("names", nargs="+")
    for cmd_name, help_text in (("run", "run presets now, one after the other"), ("queue", "queue presets")):
        p = sub.add_parser(cmd_name, help=help_text + " (all / family / preset names; unknown args go to dvc)")
        p.add_argument("names", nargs="+")
        p.add_argument("--dry-run", action="store_true", help="print the commands only")
        p.add_argument("--allow-dirty", action="store_true", help="run even if params.yaml has uncommitted edits")
    p = sub.add_parser("table", help="dvc exp show with the headline columns only")
    p.add_argument("--csv", action="store_true")
    p = sub.add_parser("compare", help="the headline table, plots and report of one family or of experiments")
    p.add_argument("names", nargs="+")
    p.add_argument("--dry-run", action="store_true")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("run", "queue", "table"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        data = load_presets(args.presets)
        if args.command == "list":
            for name in runnable(data):
                spec = data["presets"][name]
                print(f"{name:38s} {spec.get('family', ''):16s} {spec.get('desc', '')}")
            return 0
        if args.command == "show":
            for name in select(data, args.names):
                print(quote(exp_run_command(data, name)))
            return 0
        if args.command in ("run", "queue"):
            names = select(data, args.names)
            _check_workspace(data, names, extra, args.allow_dirty or args.dry_run)
            for name in names:
                rc = _run(exp_run_command(data, name, args.command == "queue", extra), args.dry_run)
                if rc:
                    return rc
            if args.command == "queue":
                print("queued; start the workers with: dvc queue start  (watch: dvc queue status)")
            return 0
        if args.command == "table":
            return _run(table_command(csv=args.csv) + extra, False)
        if args.command == "compare":
            names = [n for t in args.names for n in (data.get("families") or {}).get(t, [t])]
            label = "-".join(args.names)
            cmds = [
                table_command(),
                [sys.executable, "-m", "tmpretrain.reports", "plots", *names, "-o", f"reports/compare/{label}"],
                [sys.executable, "-m", "tmpretrain.reports", "report", *names, "-o", f"reports/compare/{label}.html"],
            ]
            for cmd in cmds:
                rc = _run(cmd, args.dry_run)
                if rc:
                    return rc
            print(f"interactive overlay (needs internet for vega): dvc plots diff {shlex.join(names)} --open")
            return 0
    except PresetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
