"""LOLBAS (LOLBAS-Project/LOLBAS): an entry per binary, its commands, paths, detections."""

from __future__ import annotations

import re

from ..extract import Extraction, FileContext, extract_lolbas
from ..parse import ParsedFile
from . import register
from .base import Source


class Lolbas(Source):
    name = "lolbas"
    default_url = "https://github.com/LOLBAS-Project/LOLBAS.git"
    web_url = "https://github.com/LOLBAS-Project/LOLBAS"
    branch = "master"
    paths = re.compile(r"^(yml|Archive-Old-Version)/.+\.ya?ml$", re.DOTALL)

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_lolbas(ctx, parsed)


register(Lolbas())
