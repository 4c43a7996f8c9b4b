"""Index the executables named by Sigma rules and LOLBAS entries.

The pipeline, one module a stage: `sources` (git) -> `parse` (YAML, pySigma) -> `extract`
(mentions) -> `index` (Whoosh) -> `query` and `export`. `refresh.refresh` runs the stages;
`cli` is a thin command line over them. For example::

    from pathlib import Path
    from indexer.index import IndexReader
    from indexer.query import search

    with IndexReader(Path("rules_cache")) as reader:
        for mention in search(reader, "certutil.exe", roles=["process"]).mentions:
            print(mention.path, mention.line, mention.snippet)
"""

__version__ = "0.1.0"


def run() -> None:
    """Console entry point (`indexer`): `cli.run`, with a Ctrl-C during its imports (a tenth of a
    second) an interruption like any other: one line, exit 130, not a traceback."""
    import sys

    try:
        from .cli import run as run_cli

        run_cli()  # exits; interruptions after its first lines are its own (the same line, 130)
    except KeyboardInterrupt:
        sys.stderr.write("indexer: interrupted\n")
        sys.exit(130)  # ExitCode.INTERRUPTED (errors.py, which the interrupted import may not have reached)
