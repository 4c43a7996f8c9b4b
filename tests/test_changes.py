"""Which refresh manifests `indexer changes` and the MCP `changes` tool list (refresh.recent_manifests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from indexer.manifest import recent_manifests


def _manifest(folder: Path, started: str, modes: dict[str, str], exit_code: int = 0) -> None:
    sources = {
        name: {
            "name": name,
            "mode": mode,
            "before": "a" * 40,
            "after": "b" * 40,
            "error": "",
            "added": [],
            "modified": [],
            "deleted": [],
            "renamed": [],
        }
        for name, mode in modes.items()
    }
    (folder / f"{started.replace(':', '')}-1.json").write_text(
        json.dumps(
            {
                "started": started,
                "finished": started,
                "duration_s": 0.1,
                "exit_code": exit_code,
                "full": False,
                "reason": "",
                "sources": sources,
                "files_parsed": 0,
                "file_errors": [],
                "mentions_added": 0,
                "mentions_removed": 0,
                "mentions_total": 0,
                "binaries": {},
                "rules_added": [],
                "rules_removed": [],
                "rules_renamed": [],
                "generation": "",
            }
        ),
        encoding="utf-8",
    )


def test_recent_manifests_newest_first_changed_only_unless_asked(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    _manifest(folder, "2026-11-01T03:17:00Z", {"sigma": "full", "lolbas": "full"})
    _manifest(folder, "2026-11-02T03:17:00Z", {"sigma": "unchanged", "lolbas": "unchanged"})
    _manifest(folder, "2026-11-03T03:17:00Z", {"sigma": "incremental", "lolbas": "unchanged"})
    _manifest(folder, "2026-11-04T03:17:00Z", {"sigma": "unchanged", "lolbas": "unchanged"}, exit_code=1)
    (folder / "2026-11-05T031700Z-1.json").write_text("{not json", encoding="utf-8")

    def started(**kwargs: object) -> list[str]:
        return [m["started"][:10] for m in recent_manifests(tmp_path, **kwargs)]  # type: ignore[arg-type]

    assert started(last=5) == ["2026-11-04", "2026-11-03", "2026-11-01"]
    assert started(last=5, include_unchanged=True) == ["2026-11-04", "2026-11-03", "2026-11-02", "2026-11-01"]
    assert started(last=1) == ["2026-11-04"]
    assert started(last=5, since="2026-11-02") == ["2026-11-04", "2026-11-03"]
    cli = subprocess.run(
        [sys.executable, "-m", "indexer", "changes", "--json", "--last", "2", "--all", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert [m["started"][:10] for m in json.loads(cli.stdout)] == ["2026-11-04", "2026-11-03"]
