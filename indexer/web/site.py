"""`indexer export --format html`: the pages of `indexer serve` as static files, rendered
from the same templates and the same query functions (`query.binary_target`,
`query.rule_target`, `joins.coverage`), from one pass over the index."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from .. import joins, xref
from ..export import safe_filename
from ..codec import file_order, mention_order
from ..chronicle import AsOf
from ..index import IndexReader
from ..model import Mention
from ..query import binary_target, rule_target
from .app import STATIC_DIR, binary_context, coverage_context, gaps_context, links_context, rule_title
from .views import MAX_LIMIT, Links, footer_of, page_of, paged_mentions, render, rule_filename

SITE_MARKER = ".indexer-site"


def write_site(reader: IndexReader | AsOf, output_dir: Path) -> dict[str, Any]:
    """index.html, binary/<safe_filename(name)>.html, rule/<safe_filename(source:path)>.html,
    coverage.html, gaps.html, links.html and static/app.css, with relative links (intranet publishing).
    No search box: a static site has no API. A rule file naming more than 500 executables
    shows its first 500. The site is written beside `output_dir` and swapped in; an existing
    `output_dir` is replaced only if an earlier write_site made it (or it is empty). From the
    index as of a date (chronicle.AsOf), the pages a full build of the sources then gives, the
    footer saying the date instead of the generation."""
    output_dir = Path(output_dir).resolve()
    if output_dir.exists() and (
        not output_dir.is_dir() or (any(output_dir.iterdir()) and not (output_dir / SITE_MARKER).exists())
    ):
        raise FileExistsError(
            f"{output_dir} exists and was not written by 'indexer export --format html': "
            "choose a new or empty directory"
        )
    started = time.time()
    by_binary: dict[str, list[Mention]] = {}
    by_file: dict[tuple[str, str], list[Mention]] = {}
    for m in reader.all_mentions():
        by_binary.setdefault(m.binary, []).append(m)
        by_file.setdefault((m.source, m.path), []).append(m)
    if isinstance(reader, AsOf):
        stamp = f"as of {reader.as_of()['at']}"
        footer = footer_of(reader.sources, as_of=str(reader.as_of()["at"]))
    else:
        stamp = reader.generation.name
        footer = footer_of(reader.sources, stamp, reader.state.built_at)
    files = reader.state.files
    deep = Links(static=True, depth=1, rules=files)
    root = Links(static=True, depth=0, rules=files)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{os.getpid()}-{time.time_ns():x}"
    (tmp / "binary").mkdir(parents=True)
    (tmp / "rule").mkdir()
    (tmp / "static").mkdir()
    try:
        rows = []
        known = reader.aliases()
        for name in sorted(by_binary):
            # as the server's page: the aliases' mentions too (pwsh.dll on pwsh.exe's page), marked
            aliases = {alias: name for alias in known.get(name, ()) if alias in by_binary}
            mentions = by_binary[name] + [m for alias in aliases for m in by_binary[alias]]
            target = binary_target(reader, name, [name], sorted(mentions, key=mention_order), aliases=aliases)
            total = len(target["mentions"]) or 1
            groups, _, paging = paged_mentions(target["mentions"], 0, total, target["rules"])
            text = render("binary.html", deep, footer, base=None, **binary_context(reader, target, groups, paging))
            (tmp / "binary" / f"{safe_filename(name)}.html").write_text(text, encoding="utf-8")
            rows.append(
                (name, len(target["detecting_rules"]), len(target["sigma_rules"]), len(target["lolbas_entries"]))
            )
        for report in files.values():
            shown = set(sorted(report.binaries)[:MAX_LIMIT])
            mentions = sorted(
                (m for m in by_file.get((report.source, report.path), []) if m.binary in shown), key=file_order
            )
            target = rule_target(reader, report, mentions)
            text = render(
                "rule.html",
                deep,
                footer,
                title=rule_title(target),
                target=target,
                base=None,
                page=page_of(len(report.binaries), 0, MAX_LIMIT),
            )
            (tmp / "rule" / rule_filename(report.source, report.path)).write_text(text, encoding="utf-8")
        coverage = joins.coverage(reader)
        entries = coverage.get("entries", [])
        data = {**coverage, "page": page_of(len(entries), 0, len(entries) or 1)}
        (tmp / "coverage.html").write_text(
            render("coverage.html", root, footer, base=None, **coverage_context(entries, data, root)), encoding="utf-8"
        )
        found = joins.gaps(reader).to_dict()
        data = {**found, "page": page_of(len(found["rows"]), 0, len(found["rows"]) or 1)}
        (tmp / "gaps.html").write_text(
            render("gaps.html", root, footer, base=None, **gaps_context(data, None)), encoding="utf-8"
        )
        rows_links = xref.links(reader)
        data = {"links": rows_links, "page": page_of(len(rows_links), 0, len(rows_links) or 1)}
        (tmp / "links.html").write_text(
            render("links.html", root, footer, base=None, **links_context(rows_links, data)), encoding="utf-8"
        )
        (tmp / "index.html").write_text(
            render("site_index.html", root, footer, title="Executables", rows=rows), encoding="utf-8"
        )
        for name in ("app.css", "favicon.svg"):
            shutil.copyfile(STATIC_DIR / name, tmp / "static" / name)
        (tmp / SITE_MARKER).write_text(f"{stamp}\n", encoding="utf-8")
        if output_dir.exists():
            old = output_dir.parent / f".{output_dir.name}.old-{os.getpid()}-{time.time_ns():x}"
            os.replace(output_dir, old)
            os.replace(tmp, output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "format": "html",
        "output": str(output_dir),
        "binaries": len(rows),
        "rules": len(files),
        "pages": len(rows) + len(files) + 4,
        "seconds": round(time.time() - started, 2),
    }
