"""Sigma (SigmaHQ/sigma): detection rules, checked by pySigma; their paths' history is kept."""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

from ..extract import Extraction, FileContext, extract_sigma
from ..parse import ParsedFile, sigma_errors
from . import register
from .base import Source


class Sigma(Source):
    name = "sigma"
    default_url = "https://github.com/SigmaHQ/sigma.git"
    web_url = "https://github.com/SigmaHQ/sigma"
    branch = "master"
    paths = re.compile(r"^(rules[^/]*|deprecated|unsupported)/.+\.ya?ml$", re.DOTALL)
    checker = f"pySigma {importlib.metadata.version('pySigma')}"  # verdicts of another version are asked again
    history = True  # LOLBAS links to rules that moved are resolved through it
    detects = True

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_sigma(ctx, parsed)

    def check(self, path: str, documents: list[Any]) -> list[str]:
        return sigma_errors(path, documents)


register(Sigma())
