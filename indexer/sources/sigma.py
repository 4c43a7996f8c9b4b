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
    former_repositories = ("Neo23x0/sigma",)
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
    from sigma.rule import SigmaRule

    try:
        if _plain_rule(documents):  # what from_dicts does with it, without its collection work (a quarter of the time)
            errors = SigmaRule.from_dict(documents[0], collect_errors=True, source=SigmaRuleLocation(path)).errors
        else:
            errors = SigmaCollection.from_dicts(
                documents,
                collect_errors=True,
                source=SigmaRuleLocation(path),
                collect_filters=True,
                resolve_references=False,
            ).errors
    except SigmaError as exc:
        return [_sigma_message(exc)]
    except Exception as exc:  # pySigma on input it does not expect: still our file error
        return [f"pySigma failed: {type(exc).__name__}: {exc}"]
    messages = [_sigma_message(e) for e in errors]
    return list(dict.fromkeys(messages))


def _plain_rule(documents: list[Any]) -> bool:
    """One document that is a plain rule: no collection action, correlation or filter, which
    `SigmaCollection.from_dicts` hands to `SigmaRule.from_dict` as it is."""
    return (
        len(documents) == 1
        and isinstance(documents[0], dict)
        and not {"action", "correlation", "filter"}.intersection(documents[0])
    )


def _sigma_message(exc: Exception) -> str:
    text = str(exc)
    cut = text.find(" in file ")
    if cut == -1:
        cut = text.find(" in ")
        cut = cut if cut != -1 and text[cut + 4 :].startswith(("/", "rules", "deprecated", "unsupported")) else -1
    return f"pySigma: {text[:cut] if cut > 0 else text}"


register(Sigma())
