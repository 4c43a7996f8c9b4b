"""The `indexer` command's entry point (the console script and `python -m indexer`)."""

from __future__ import annotations

import sys


def run() -> None:
    """Console entry point (`indexer`): `cli.run`, with a Ctrl-C during its imports (a tenth of a
    second) an interruption like any other: one line, exit 130, not a traceback."""
    try:
        from .cli import run as run_cli

        run_cli()  # exits; interruptions after its first lines are its own (the same line, 130)
    except KeyboardInterrupt:
        sys.stderr.write("indexer: interrupted\n")
        sys.exit(130)  # ExitCode.INTERRUPTED (errors.py, which the interrupted import may not have reached)
