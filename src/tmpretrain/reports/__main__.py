"""python -m tmpretrain.reports report|plots ...: the `tmpretrain report` and `tmpretrain plots` subcommands."""

from ..cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m tmpretrain.reports", commands=("report", "plots")))
