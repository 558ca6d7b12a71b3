"""python -m tmpretrain.experiments list|show|run|queue|table|compare|results: those `tmpretrain` subcommands."""

from ..cli import main

if __name__ == "__main__":
    raise SystemExit(
        main(
            prog="python -m tmpretrain.experiments",
            commands=("list", "show", "run", "queue", "table", "compare", "results"),
        )
    )
