"""Sigma (SigmaHQ/sigma): detection rules, checked by pySigma; their paths' history is kept."""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

from ..extract import Extraction, FileContext, extract_sigma
from ..parse import ParsedFile
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


def sigma_errors(path: str, documents: list[Any]) -> list[str]:
    """Parse the documents of one Sigma file with pySigma; return its errors as text.

    Call after extraction: pySigma's collection merging may modify the dicts.
    """
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError, SigmaRuleLocation

    try:
        collection = SigmaCollection.from_dicts(
            documents,
            collect_errors=True,
            source=SigmaRuleLocation(path),
            collect_filters=True,
            resolve_references=False,
        )
    except SigmaError as exc:
        return [_sigma_message(exc)]
    except Exception as exc:  # pySigma on input it does not expect: still our file error
        return [f"pySigma failed: {type(exc).__name__}: {exc}"]
    messages = [_sigma_message(e) for e in collection.errors]
    return list(dict.fromkeys(messages))


def _sigma_message(exc: Exception) -> str:
    text = str(exc)
    cut = text.find(" in file ")
    if cut == -1:
        cut = text.find(" in ")
        cut = cut if cut != -1 and text[cut + 4 :].startswith(("/", "rules", "deprecated", "unsupported")) else -1
    return f"pySigma: {text[:cut] if cut > 0 else text}"


register(Sigma())
