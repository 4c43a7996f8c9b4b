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
