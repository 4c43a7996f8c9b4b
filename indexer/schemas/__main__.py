"""`python -m indexer.schemas [DIR]`: write the exports' JSON Schemas (default: this package)."""

import sys
from pathlib import Path

from . import HERE, write

for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
    print(path)
