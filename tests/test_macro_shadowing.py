"""A Splunk macro call resolves by the macro's name, whatever file defines it: the first file in
path order that defines the name wins (sources/splunk.load_macros). A commit that adds, changes or
removes a macro file that defines (or defined) a name can change what a call to that name means,
without any file the detection read changing. The incremental refresh (plan.dependents) and the
history (chronicle) must read such detections again: each step of a small repository built here
is compared with a full build of that step.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from indexer.chronicle import AsOf
from indexer.index import IndexReader
from indexer.refresh import RefreshOptions, refresh
from indexer.sources import get

from repos import git

DETECTION = "name: A\nsearch: '| tstats count where `process_lolbin` by x'\n"
OTHER = "name: B\nsearch: '| tstats count where `process_other` by x'\n"
LOLBIN = "definition: (Processes.process_name=certutil.exe)\nname: process_lolbin\n"
# a file that sorts before macros/process_lolbin.yml and defines the same name: it wins
SHADOW = "definition: (Processes.process_name=mshta.exe)\nname: process_lolbin\n"
STEPS: list[dict[str, str | None]] = [
    {"macros/process_lolbin.yml": LOLBIN, "detections/endpoint/a.yml": DETECTION, "detections/endpoint/b.yml": OTHER},
    {"macros/aaa_lolbin.yml": SHADOW},  # added: `process_lolbin` now means mshta.exe
    {"macros/aaa_lolbin.yml": SHADOW.replace("name: process_lolbin", "name: process_renamed")},  # certutil again
    # a file named otherwise defines the macro b.yml calls, unknown until now
    {"macros/zz_misc.yml": "definition: (Processes.process_name=regsvr32.exe)\nname: process_other\n"},
    {"macros/aaa_lolbin.yml": SHADOW, "macros/zz_misc.yml": None},  # shadows again; b.yml's macro gone
    {"detections/endpoint/a.yml": DETECTION + "description: changed\n"},
    # back to its first content, read then with the macro unshadowed: not that version again
    {"detections/endpoint/a.yml": DETECTION},
]


def _mentions(reader: IndexReader | AsOf) -> list[tuple[str, int, str, str]]:
    return sorted((m.path, m.line, m.binary, m.role) for m in reader.all_mentions())


def test_a_macro_defined_in_another_file_changes_its_callers_in_the_refresh_and_the_history(tmp_path: Path) -> None:
    repo = tmp_path / "security_content"
    repo.mkdir()
    git("init", "-q", "-b", "develop", cwd=repo)
    data = tmp_path / "data"
    seen: list[tuple[int, list[tuple[str, int, str, str]]]] = []
    for step, changes in enumerate(STEPS):
        for path, content in changes.items():
            if content is None:
                (repo / path).unlink()
                continue
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(content, encoding="utf-8")
        when = 1_700_000_000 + step * 86_400
        env = {**os.environ, "GIT_COMMITTER_DATE": f"{when} +0000", "GIT_AUTHOR_DATE": f"{when} +0000"}
        git("add", "-A", cwd=repo)
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", f"step {step}"],
            cwd=repo,
            env=env,
            check=True,
        )
        spec = [get("splunk").spec(str(repo))]
        assert refresh(RefreshOptions(data, spec, history_since="")).exit_code == 0
        full = tmp_path / f"full-{step}"
        assert refresh(RefreshOptions(full, spec)).exit_code == 0
        with IndexReader(full) as built, IndexReader(data) as grown:
            expected = _mentions(built)
            assert _mentions(grown) == expected, step  # the incremental refresh
            files = {k: r.depends for k, r in built.state.files.items()}
            assert {k: r.depends for k, r in grown.state.files.items()} == files, step
        seen.append((when, expected))
    binaries = [{b for p, _, b, _ in mentions if p == "detections/endpoint/a.yml"} for _, mentions in seen]
    assert binaries == [
        {"certutil.exe"},
        {"mshta.exe"},
        {"certutil.exe"},
        {"certutil.exe"},
        {"mshta.exe"},
        {"mshta.exe"},
        {"mshta.exe"},
    ]
    assert any(p == "detections/endpoint/b.yml" and b == "regsvr32.exe" for p, _, b, _ in seen[3][1])
    for step, (when, expected) in enumerate(seen):  # the history, as of each step
        with AsOf(data, when) as past:
            assert _mentions(past) == expected, (step, json.dumps(_mentions(past)))
