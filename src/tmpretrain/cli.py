"""The `tmpretrain` console command: one subcommand per thing users do, each a thin call into the library.

    tmpretrain list                             the presets (presets.yaml) and their families
    tmpretrain show NAME...                     the exact `dvc exp run` command of presets
    tmpretrain run NAME... [-S k=v ...]         run presets now as named DVC experiments (extra args go to dvc)
    tmpretrain exp run [-S k=v ...] [ARGS]      `dvc exp run ARGS`, its -S values checked before DVC writes them
    tmpretrain queue NAME|FAMILY|all            queue them (then: dvc queue start)
    tmpretrain table [NAME...] [--csv|--md]     one row per experiment: params that differ, headline metrics
    tmpretrain plots [REV...]                   `dvc plots diff` as HTML that draws offline (--format svg|png)
    tmpretrain report [REV...]                  the original study's analysis as one offline HTML file
    tmpretrain compare NAME|FAMILY...           table, plots and report of a family or of experiments
    tmpretrain study [NAME...] [--seeds 4]      queue every preset at several training seeds, resumable
    tmpretrain results [--from results.json]    docs/experiments/results.md from the presets' experiments
    tmpretrain bench [--quick ...]              the performance benchmark (bench eval: simulator; bench rl: learner)
    tmpretrain faults [--update DOC ...]        the fault table of docs/reliability.md (needs the source checkout)
    tmpretrain check [params.yaml]              validate params without running anything (--markdown: the reference)
    tmpretrain export inspect DIR               what an export holds, which offset and epoch, how to load it

One way in: these subcommands, plus the DVC stages (`python -m tmpretrain.stages.<stage>`, which dvc.yaml runs).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from . import experiments as exps
from .errors import PretrainError

PROG = "tmpretrain"
# Subcommands whose unknown arguments go on to dvc (run, queue: `dvc exp run`; table: `dvc exp show`).
_PASS_TO_DVC = ("run", "queue", "table")


# ---------------------------------------------------------------------------------------------- presets


def _presets(args) -> dict:
    return exps.load_presets(args.presets)


def _list(args, extra) -> int:
    data = _presets(args)
    for name in exps.runnable(data):
        spec = data["presets"][name]
        print(f"{name:38s} {spec.get('family', ''):16s} {spec.get('desc', '')}")
    return 0


def _show(args, extra) -> int:
    data = _presets(args)
    for name in exps.select(data, args.names):
        print(exps.quote(exps.exp_run_command(data, name)))
    return 0


def _run_or_queue(args, extra) -> int:
    return exps.run_presets(_presets(args), args.names, args.command == "queue", extra, args.dry_run, args.allow_dirty)


def _exp(args, extra) -> int:
    return exps.exp_run(args.dvc_args)


def _study(args, extra) -> int:
    from .experiments.study import queue_study

    return queue_study(args.names or ["all"], _presets(args), args.seeds, args.dry_run, args.target)


def _names(args, targets: list[str]) -> list[str]:
    """Families expanded through presets.yaml where there is one (experiment names pass through)."""
    return exps.family_members(_presets(args), targets) if Path(args.presets).is_file() else list(targets)


def _table(args, extra) -> int:
    rows = exps.experiment_rows(exps.exp_show(extra))
    df, short = exps.comparison_table(rows, _names(args, args.names))
    fmt = "csv" if args.csv else "md" if args.md else "text"
    width = args.width or shutil.get_terminal_size((120, 24)).columns
    sys.stdout.write(exps.format_table(df, short, fmt, width))
    return 0


def _compare(args, extra) -> int:
    names = _names(args, args.names)
    label = "-".join(args.names)
    steps = [
        ["table", *names],
        ["plots", *names, "-o", f"reports/compare/{label}"],
        ["report", *names, "-o", f"reports/compare/{label}.html"],
    ]
    for step in steps:
        print("$ " + exps.quote([PROG, *step]), flush=True)
        rc = 0 if args.dry_run else main(["--presets", args.presets, *step])
        if rc:
            return rc
    return 0


def _results(args, extra) -> int:
    from .experiments import results

    if args.snapshot:
        snapshot = results.load_snapshot(args.snapshot)
    else:
        existing = Path(args.output) / results.SNAPSHOT_FILE.name  # runs of earlier sittings are kept
        previous = results.load_snapshot(existing) if existing.is_file() else None
        snapshot = results.collect(exps.experiment_rows(exps.exp_show(["-A"])), _presets(args), previous=previous)
    for path in results.write_results(snapshot, args.output, write_snapshot=not args.snapshot):
        print(f"results: {path}")
    if snapshot.get("missing"):
        print(f"not run yet: {', '.join(snapshot['missing'])}")
    return 0


# ---------------------------------------------------------------------------------------------- reports


def _plots(args, extra) -> int:
    from .reports.dvcplots import dvc_plots_command, render_dvc_plots
    from .reports.runs import WORKSPACE, check_outputs_cached

    check_outputs_cached([rev for rev in args.revs if rev != WORKSPACE])
    if args.format == "html":
        Path(args.output).mkdir(parents=True, exist_ok=True)  # dvc creates only the last level
        return exps.run_command(dvc_plots_command(args.revs, args.output))
    paths = render_dvc_plots(args.revs, args.output, args.format)
    print(f"plots: {len(paths)} files and index.html in {args.output}")
    return 0


def _report(args, extra) -> int:
    from .reports.page import write_report
    from .reports.runs import WORKSPACE

    workspace_only = args.revs in ([], [WORKSPACE])
    out = write_report(
        args.revs,
        args.output,
        interval=args.interval,
        best=args.best,
        eval_dir="reports/eval" if workspace_only else None,
    )
    print(f"report: {out}")
    return 0


# ---------------------------------------------------------------------------------------------- others


def _bench(args, extra) -> int:
    argv = [*args.bench_args, *extra]
    if argv[:1] == ["eval"]:
        from .evaluate import bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["rl"]:
        from .rl.bench import main as rl_bench

        return rl_bench(argv[1:])
    from .bench import main as pipeline_bench

    pipeline_bench(argv)
    return 0


FAULTS = Path("tests/support/faults.py")  # the fault corpora and their judges: test support, not in the package


def faults_checkout(start: Path | None = None) -> Path | None:
    """The source checkout holding the fault corpora: the working directory or one above it, else the checkout
    this package was installed from (editable install); None from an installed package alone."""
    here = (start or Path.cwd()).resolve()
    for root in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (root / FAULTS).is_file() and (root / "pyproject.toml").is_file():
            return root
    return None


def _faults(args, extra) -> int:
    import os
    import subprocess

    root = faults_checkout()
    if root is None:
        raise PretrainError(
            f"`{PROG} faults` needs the source checkout (it runs {FAULTS.as_posix()}, which an installed package "
            "does not have): run it in a clone of the repository"
        )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "tests"), env.get("PYTHONPATH")]))
    # Its own arguments, as given (argparse would take its options for the top-level parser's unknown arguments).
    own = args.argv[args.argv.index("faults") + 1 :]
    return subprocess.run([sys.executable, "-m", "support.faults", *own], env=env).returncode


def _check(args, extra) -> int:
    from .params import check_pipeline_params, load_params, markdown_reference

    if args.markdown:
        sys.stdout.write(markdown_reference())
        return 0
    params = load_params(args.params)
    check_pipeline_params(params)
    print(
        f"{args.params}: valid (pretrain_bc trains up to {params.bc.epochs} epochs and exports the "
        f"{params.bc.export_offset_ms} ms head)"
    )
    return 0


def describe_export(out_dir: Path | str) -> str:
    """What an export directory holds (verified against its pretrain_meta.json) and how to load it."""
    from .export import ACTIONS_HEAD_FILE, ENCODER_FILE, META_FILE, load_export

    out_dir = Path(out_dir)
    meta, states = load_export(out_dir)
    level = meta.get("level")
    sel = meta.get("selection") or {}
    lines = [f"{out_dir}: Level {level} export, verified (sha256 of every file and the agent's shapes)", ""]
    for name, state in states.items():
        info = meta["files"][name]
        lines.append(f"  {name:28s} {info['bytes']:>9,d} bytes  sha256 {info['sha256'][:16]}")
        shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in state.items())
        lines.append(textwrap.fill(shapes, 116, initial_indent="    ", subsequent_indent="    "))
    lines.append("")
    if sel:
        value = sel.get("value")
        lines.append(
            f"  epoch      {sel.get('epoch')} (0-based) of {sel.get('epochs_run')} run, chosen by "
            f"{sel.get('metric')} {sel.get('mode')} = {value:.4f}"
            if isinstance(value, float)
            else f"  epoch      {sel.get('epoch')} (0-based) of {sel.get('epochs_run')} run"
        )
    if level == 1:
        lines.append(
            f"  offset     {meta.get('exported_offset_ms')} ms head (trained offsets {meta.get('time_offsets_ms')}, "
            f"target {meta.get('target')}, n_stack {meta.get('n_stack')})"
        )
        lines.append(f"  head       {meta.get('head_layout')}")
    hw = meta.get("image_size")
    lines.append(f"  input      {hw} frames, normalised {meta.get('normalization_formula')}")
    lines.append(f"  code       {meta.get('git_commit')}")
    if level == 1 and ACTIONS_HEAD_FILE not in states:
        lines.append(
            f"\n  warning: no agent head exported ({ACTIONS_HEAD_FILE} missing: bc.use_actions_head was false, and a "
            "Linear head is not the agent's A_head layout); only the encoder loads into the agent"
        )
    lines += ["", "How to load (checks sha256 and shapes again):", "", "    from tmpretrain.export import load_export"]
    lines.append(f'    meta, states = load_export("{out_dir.as_posix()}")')
    targets = {
        ENCODER_FILE: "agent.img_head",
        ACTIONS_HEAD_FILE: "agent.A_head",
        "float_feature_extractor.pt": "agent.float_feature_extractor",
    }
    for name, module in targets.items():
        if name in states:
            lines.append(f'    {module}.load_state_dict(states["{name}"], strict=True)')
    lines.append(f"\nEverything recorded about the run: {out_dir / META_FILE}")
    return "\n".join(lines) + "\n"


def _export(args, extra) -> int:
    sys.stdout.write(describe_export(args.dir))
    return 0


# ---------------------------------------------------------------------------------------------- parser


def _add_list(sub):
    return sub.add_parser("list", help="the presets and their families")


def _add_show(sub):
    p = sub.add_parser("show", help="the dvc exp run command of presets")
    p.add_argument("names", nargs="+", help="presets, families or all")
    return p


def _add_run_or_queue(name: str, help_text: str):
    def add(sub):
        p = sub.add_parser(name, help=help_text + " (all / family / preset names; unknown args go to dvc exp run)")
        p.add_argument("names", nargs="+")
        p.add_argument("--dry-run", action="store_true", help="print the commands only")
        p.add_argument("--allow-dirty", action="store_true", help="run even if params.yaml has uncommitted edits")
        return p

    return add


def _add_study(sub):
    from .experiments.study import STUDY_SEEDS

    p = sub.add_parser(
        "study",
        help="queue each preset at training seeds 0..N-1 (bc.seed and vis.seed) that has not finished or been "
        "queued yet, and start one worker: run it again to resume",
    )
    p.add_argument("names", nargs="*", help="presets or families (default: all)")
    p.add_argument("--seeds", type=int, default=STUDY_SEEDS, help=f"training seeds per preset (default {STUDY_SEEDS})")
    p.add_argument(
        "--target",
        metavar="STAGE",
        help="run each experiment up to this dvc.yaml stage only (e.g. evaluate: the verdicts' inputs, without rl)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    return p


def _add_exp(sub):
    p = sub.add_parser(
        "exp",
        help="dvc exp run with its -S values checked first (a refused value never reaches params.yaml)",
        add_help=False,
    )
    p.add_argument("action", choices=["run"])
    p.add_argument("dvc_args", nargs=argparse.REMAINDER, help="dvc exp run's arguments")
    return p


def _add_table(sub):
    p = sub.add_parser(
        "table", help="one row per experiment: the params that differ and the headline metrics (dvc exp show)"
    )
    p.add_argument("names", nargs="*", help="experiments, revisions or families (default: all dvc exp show lists)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV, header first")
    fmt.add_argument("--md", action="store_true", help="a Markdown table")
    p.add_argument("--width", type=int, help="text width (default: the terminal's, 120 when not a terminal)")
    return p


def _add_plots(sub):
    p = sub.add_parser("plots", help="dvc plots diff of experiments as HTML that draws offline, or SVG/PNG files")
    p.add_argument("revs", nargs="*", help="experiments / revisions (default: the workspace)")
    p.add_argument("-o", "--output", default="reports/plots", help="directory (default reports/plots)")
    p.add_argument("--format", choices=("html", "svg", "png"), default="html")
    return p


def _add_report(sub):
    p = sub.add_parser("report", help="the original study's analysis of experiments as one offline HTML file")
    p.add_argument("revs", nargs="*", help="experiments / revisions (default: workspace)")
    p.add_argument("-o", "--output", default="reports/compare.html")
    p.add_argument("--interval", type=int, default=5, help="the checkpoint table every N epochs")
    p.add_argument("--best", default="val/loss:min", help="metric:min|max that picks the best epoch")
    return p


def _add_compare(sub):
    p = sub.add_parser("compare", help="table, plots and report of a family or of experiments")
    p.add_argument("names", nargs="+")
    p.add_argument("--dry-run", action="store_true", help="print the steps only")
    return p


def _add_results(sub):
    p = sub.add_parser("results", help="the results page of every preset's experiment (docs/experiments/results.md)")
    p.add_argument("--from", dest="snapshot", help="write the page from this snapshot instead of dvc exp show")
    p.add_argument("-o", "--output", default="docs/experiments", help="directory (default docs/experiments)")
    return p


def _add_bench(sub):
    p = sub.add_parser(
        "bench",
        add_help=False,
        help="benchmarks: data path and training (tmpretrain bench --help), the simulator and policy (bench eval), "
        "the RL learner (bench rl)",
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    return p


def _add_faults(sub):
    p = sub.add_parser(
        "faults", add_help=False, help="run the fault corpora, print (--update DOC: write) the fault table"
    )
    p.add_argument("faults_args", nargs=argparse.REMAINDER)
    return p


def _add_check(sub):
    p = sub.add_parser("check", help="validate params.yaml without running anything")
    p.add_argument("params", nargs="?", default="params.yaml")
    p.add_argument("--markdown", action="store_true", help="print the params reference instead (docs/params.md)")
    return p


def _add_export(sub):
    p = sub.add_parser("export", help="inspect an export directory (models/bc, models/vis)")
    actions = p.add_subparsers(dest="action", required=True)
    inspect = actions.add_parser("inspect", help="what an export holds, which offset and epoch, how to load it")
    inspect.add_argument("dir", help="an export directory, e.g. models/bc")
    return p


# name -> (adds its parser, runs it)
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "list": (_add_list, _list),
    "show": (_add_show, _show),
    "run": (_add_run_or_queue("run", "run presets now, one after the other"), _run_or_queue),
    "queue": (_add_run_or_queue("queue", "queue presets"), _run_or_queue),
    "exp": (_add_exp, _exp),
    "table": (_add_table, _table),
    "plots": (_add_plots, _plots),
    "report": (_add_report, _report),
    "compare": (_add_compare, _compare),
    "study": (_add_study, _study),
    "results": (_add_results, _results),
    "bench": (_add_bench, _bench),
    "faults": (_add_faults, _faults),
    "check": (_add_check, _check),
    "export": (_add_export, _export),
}


def build_parser(prog: str = PROG, commands: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default=str(exps.PRESETS_FILE), help="presets file (default presets.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in commands or COMMANDS:
        COMMANDS[name][0](sub)
    return parser


def main(argv: list[str] | None = None, prog: str = PROG, commands: tuple[str, ...] | None = None) -> int:
    """Run one subcommand; user errors print one line and return 1."""
    parser = build_parser(prog, commands)
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    if extra and args.command not in (*_PASS_TO_DVC, "bench", "faults"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command][1](args, extra)
    except PretrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
