"""Hostile repositories and hostile source URLs: nothing outside the clone is read, nothing is run.

A Sigma-shaped and a LOLBAS-shaped repository are built here as real git repositories. Beside
good rules they hold every kind of file the README promises to refuse (symbolic links to
/etc/passwd, out of the repository and into a directory loop, a submodule, a file over the size
limit, an alias bomb, 10,000-level nesting, invalid UTF-8, tabs, duplicate keys, documents that
are not mappings, an impossible date, a Python tag), a file with 60,000 keys, and rules whose
names, titles and paths are hostile. One refresh indexes both; the tests judge the index,
`indexer stats` and every export format, parsed back.

Then the URL and branch forms the README refuses, run through the CLI with a `git` on PATH that
records every invocation, and a URL with credentials that must never be printed or stored in a
manifest or the index.
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote

import pytest

from indexer.export import clean, formula_like
from indexer.index import IndexReader
from indexer.query import search
from indexer.errors import ExitCode
from indexer.manifest import Manifest
from indexer.refresh import RefreshOptions, refresh
from indexer.repository import SourceSpec, clone_path, redact
from indexer.sources import get
from repos import split_row

_BIN = Path(sys.executable).parent / "indexer"
INDEXER = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "indexer"]
REAL_GIT = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True).stdout.strip()

# The 60,000-key file is about 600 KB, so the limit must sit above it; the oversized rule is 50 KB
# over the limit. (A 20 KB limit could not hold the 60,000-key file.)
MAX_FILE_BYTES = 700_000
REFRESH_BUDGET_S = 120  # the whole hostile refresh; it takes a few seconds
CLI_TIMEOUT_S = 120  # every CLI call is killed after this


# --- helpers ------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would redirect the indexer or git."""
    drop = ("INDEXER_", "GIT_PYTHON_GIT_EXECUTABLE", "GIT_DIR", "GIT_WORK_TREE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and "proxy" not in k.lower()}
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INDEXER, *args], capture_output=True, text=True, cwd=cwd, env=env or clean_env(), timeout=CLI_TIMEOUT_S
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def make_repo(
    root: Path, files: dict[str, bytes | str], links: dict[str, str] | None = None, gitlinks: tuple[str, ...] = ()
) -> Path:
    """A real git repository (branch main, one commit) with files, symbolic links and submodule entries."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    for path, dest in (links or {}).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(dest, target)
    git(root, "add", "-A")
    for path in gitlinks:  # a submodule entry (mode 160000) pointing at some commit
        git(root, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},{path}")
    git(root, "commit", "-q", "-m", "hostile rules")
    return root


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block runs longer than `seconds`."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def tables(markdown: str, header: str) -> Iterator[list[str]]:
    """Every row of every table whose header line is `header`."""
    lines = markdown.split("\n")
    for i, line in enumerate(lines):
        if line != header:
            continue
        assert re.fullmatch(r"--( \| --)*", lines[i + 1]), lines[i + 1]
        for row in lines[i + 2 :]:
            if not row.strip():
                break
            yield split_row(row)


_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")


def outside_code(text: str) -> str:
    return _CODE_SPAN.sub(" ", text)


def code_span_text(cell: str) -> str:
    """The text of a cell that is one code span, as GFM shows it (\\| is a pipe in a table)."""
    match = re.fullmatch(r"(`+)(.*)\1", cell)
    assert match, cell
    inner = match.group(2)
    if inner.startswith(" ") and inner.endswith(" ") and inner.strip():
        inner = inner[1:-1]
    return inner.replace("\\|", "|")


# --- the hostile repositories -------------------------------------------------------------------


def sigma_rule(title: str, image: str, rule_id: str, extra: str = "") -> str:
    return f"""title: {title}
id: {rule_id}
status: test
description: Detects {image} running.
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith: '\\{image}'
{extra}    condition: selection
level: high
"""


GOOD = {
    "rules/windows/process_creation/proc_creation_win_certutil_download.yml": r"""title: Suspicious Download Via Certutil.EXE
id: 19b08b1c-861d-4e75-a1ef-ea0c1baf202b
status: test
description: Detects the execution of certutil with the "urlcache" flag to download files.
logsource:
    category: process_creation
    product: windows
detection:
    selection_img:
        - Image|endswith: '\certutil.exe'
        - OriginalFileName: 'CertUtil.exe'
    selection_cli:
        CommandLine|contains: 'urlcache '
    condition: all of selection_*
falsepositives:
    - Unknown
level: high
""",
    "rules/windows/process_creation/proc_creation_win_certutil_encode.yml": r"""title: File Encoded To Base64 Via Certutil.EXE
id: e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a
status: test
description: Detects the execution of certutil with the "encode" flag.
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith: '\certutil.exe'
        CommandLine|contains: '-encode'
    filter_main:
        ParentImage|endswith: '\msiexec.exe'
    condition: selection and not filter_main
level: medium
""",
    "rules/windows/process_creation/proc_creation_win_psr_capture.yml": r"""title: Screen Capture Activity Via Psr.EXE
id: 2158f96f-43c2-43cb-952a-ab4580f32382
status: test
description: Detects execution of Windows Problem Steps Recorder (psr.exe).
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith: '\Psr.exe'
        CommandLine|contains: '/start'
    condition: selection
level: medium
""",
}

HOSTILE_RULE_PATH = "rules/windows/process_creation/hostile |`x`<b>&amp;.yml"
# Every line the exports must carry as data. Raw control characters cannot stand in YAML (the
# parser refuses them), so the control character comes from a double-quoted escape (\a) and a
# literal tab inside a single-quoted value.
HOSTILE_RULE = r"""title: '=HYPERLINK("http://evil.example/?x") <script>alert(1)</script> | **bold** [x](javascript:alert(1)) `tick` hostile.exe'
id: 0badc0de-0000-4000-8000-000000000001
status: test
description: "Names: \\..\\..\\x.exe, a|b.exe, `x`.exe, <script>.exe, bell\a.exe"
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith:
            - '\..\..\x.exe'
            - 'a|b.exe'
            - '`x`.exe'
            - '<script>.exe'
            - "bell\a.exe"
            - '\tab	tabbed.exe'
            - '\evil | `pipe` <img src=x onerror=alert(1)> evil.exe'
    selection_cli:
        CommandLine|contains:
            - "=cmd|' /c calc'!A0.exe"
    keywords:
        - "=cmd|' /c calc'!A1.exe"
        - '@SUM(1+1)*cmd|'' /c calc''!A2.exe'
    selection_block:
        CommandLine|contains: |-
            =cmd|' /c calc'!A3.exe
            +cmd|' /c calc'!A4.exe
            @at.exe
            -dash.exe
    condition: 1 of selection* or keywords
level: high
"""
# Lines of HOSTILE_RULE whose snippet starts with a spreadsheet formula character.
FORMULA_SNIPPETS = [
    "=cmd|' /c calc'!A3.exe",
    "+cmd|' /c calc'!A4.exe",
    "@at.exe",
    "-dash.exe",
    "- \"=cmd|' /c calc'!A1.exe\"",
]

HOSTILE_PATHS = {  # files whose *paths* are hostile; their content is a good rule
    "rules/windows/-rf.yml": ("dashpath.exe", "0badc0de-0000-4000-8000-000000000002"),
    "rules/windows/tab\tname.yml": ("tabpath.exe", "0badc0de-0000-4000-8000-000000000003"),
    "rules/windows/.hidden.yml": ("hiddenpath.exe", "0badc0de-0000-4000-8000-000000000004"),
    "rules/windows/pct%41.yml": ("pctpath.exe", "0badc0de-0000-4000-8000-000000000008"),
}

NEWLINE_PATH = "rules/windows/new\nline.yml"


def billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\ntitle: Bomb naming bomb.exe\n"


def oversized_rule() -> str:
    head = sigma_rule("Too big naming toobig.exe", "toobig.exe", "0badc0de-0000-4000-8000-000000000005")
    padding = "# " + "x" * 98 + "\n"
    text = head + padding * ((MAX_FILE_BYTES + 50_000 - len(head)) // len(padding) + 1)
    assert len(text) > MAX_FILE_BYTES + 49_000
    return text


def many_keys() -> str:
    head = sigma_rule("Sixty thousand keys naming manykeys.exe", "manykeys.exe", "0badc0de-0000-4000-8000-000000000006")
    text = head + "".join(f"k{i}: v\n" for i in range(60_000))
    assert len(text.encode()) < MAX_FILE_BYTES
    return text


W = "rules/windows/"
BAD_FILES: dict[str, bytes | str] = {
    W + "bomb.yml": billion_laughs(),
    W + "deep_flow.yml": "title: Deep naming deepflow.exe\ndetection: " + "[" * 10_000 + "]" * 10_000 + "\n",
    W + "deep_block.yml": "title: Deep naming deepblock.exe\ndetection:\n  " + "- " * 10_000 + "x\n",
    W + "deep_map.yml": "title: Deep naming deepmap.exe\ndetection: " + "{a: " * 10_000 + "b" + "}" * 10_000 + "\n",
    W + "latin1.yml": "title: Caf\xe9 naming latin1.exe\n".encode("latin-1"),
    W + "utf16.yml": "\ufefftitle: UTF-16 naming utf16.exe\n".encode("utf-16-le"),
    W + "tabs.yml": "title: Tabs naming tabs.exe\ndetection:\n\tselection:\n\t\tImage|endswith: '\\tabs.exe'\n"
    "\tcondition: selection\n",
    W + "duplicate.yml": "title: Duplicate naming duplicate.exe\nid: x\ntitle: again\n",
    W + "duplicate_nested.yml": "title: Nested duplicate\ndetection:\n    selection:\n"
    "        Image|endswith: '\\dupnested.exe'\n        Image|endswith: '\\other.exe'\n"
    "    condition: selection\n",
    W + "list.yml": "- title: A list naming listdoc.exe\n- detection: {}\n",
    W + "scalar.yml": "just a scalar naming scalardoc.exe\n",
    W + "bad_date.yml": "title: Bad date naming baddate.exe\ndate: 2024-13-45\n",
    W + "nul.yml": "title: a\x00b naming nul.exe\n",
}
# path -> (status, reason pattern): the README's promise, kind by kind
EXPECTED_PROBLEMS = {
    W + "link_passwd.yml": ("skipped", "symbolic link"),
    W + "link_secret.yml": ("skipped", "symbolic link"),
    W + "link_secret_relative.yml": ("skipped", "symbolic link"),
    "rules/loop": ("skipped", "symbolic link"),
    W + "loop.yml": ("skipped", "symbolic link"),
    W + "submodule.yml": ("skipped", "submodule"),
    W + "process_creation/big.yml": ("skipped", f"over the {MAX_FILE_BYTES:,}-byte limit"),
    W + "bomb.yml": ("error", "alias bomb|nodes"),
    W + "deep_flow.yml": ("error", "nesting|deeply"),
    W + "deep_block.yml": ("error", "nesting|deeply"),
    W + "deep_map.yml": ("error", "nesting|deeply"),
    W + "latin1.yml": ("error", "UTF-8"),
    W + "utf16.yml": ("error", "UTF-8"),
    W + "tabs.yml": ("error", "invalid YAML"),
    W + "duplicate.yml": ("error", "duplicate key 'title'"),
    W + "duplicate_nested.yml": ("error", "duplicate key 'Image|endswith'"),
    W + "list.yml": ("error", r"no YAML mapping .*list"),
    W + "scalar.yml": ("error", r"no YAML mapping .*str"),
    W + "bad_date.yml": ("error", "invalid YAML value"),
    W + "nul.yml": ("error", "invalid YAML"),
    W + "python_tag.yml": ("error", "invalid YAML.*constructor"),
}
# names that only bad files carry: none may reach the index
BAD_NAMES = [
    "secret.exe",
    "toobig.exe",
    "bomb.exe",
    "deepflow.exe",
    "deepblock.exe",
    "deepmap.exe",
    "latin1.exe",
    "utf16.exe",
    "tabs.exe",
    "duplicate.exe",
    "dupnested.exe",
    "listdoc.exe",
    "scalardoc.exe",
    "baddate.exe",
    "nul.exe",
    "pwned.exe",
]


def lolbas_entry(name: str, command: str) -> str:
    return f"""Name: '{name}'
Description: Entry for {name} <script>alert(1)</script>
Author: t
Created: 2024-01-01
Commands:
  - Command: "{command}"
    Description: Runs {name}
    Usecase: Execute
    Category: Execute
    Privileges: User
    MitreID: T1218
    OperatingSystem: Windows 10
Full_Path:
  - Path: 'C:\\Windows\\System32\\{name}'
Detection:
  - IOC: {name} spawned
"""


# LOLBAS names become binary names as written: these are the hostile binaries of the index,
# except `..`, which names no file (a name needs a letter or a digit): it must not be indexed.
LOLBAS_HOSTILE_NAMES = ["..", "-rf", "+x", ".bashrc", "--output"]
NOT_A_NAME = ".."


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("hostile")
    marker = f"SECRET-MARKER-{uuid.uuid4().hex}"
    pwned = root / f"pwned-{uuid.uuid4().hex}"
    outside = root / "outside"
    outside.mkdir()
    secret = outside / "secret.yml"
    secret.write_text(sigma_rule(f"{marker} naming secret.exe", "secret.exe", "0badc0de-0000-4000-8000-00000000000f"))

    files: dict[str, bytes | str] = {
        "LICENSE": "Detection Rule License (DRL) 1.1\n",
        "README.md": "A hostile Sigma repository.\n",
        **GOOD,
        HOSTILE_RULE_PATH: HOSTILE_RULE,
        **{path: sigma_rule(f"Hostile path naming {name}", name, rid) for path, (name, rid) in HOSTILE_PATHS.items()},
        NEWLINE_PATH: sigma_rule(
            "Newline path naming newlinepath.exe", "newlinepath.exe", "0badc0de-0000-4000-8000-000000000007"
        ),
        W + "process_creation/big.yml": oversized_rule(),
        W + "many_keys.yml": many_keys(),
        **BAD_FILES,
        W + "python_tag.yml": f"title: !!python/object/apply:os.system ['touch {pwned}']\n",
    }
    sigma_dir = root / "sigma"
    links = {
        W + "link_passwd.yml": "/etc/passwd",
        W + "link_secret.yml": str(secret),
        W + "link_secret_relative.yml": os.path.relpath(secret, sigma_dir / "rules" / "windows"),
        "rules/loop": ".",
        W + "loop.yml": "..",
    }
    sigma = make_repo(sigma_dir, files, links, gitlinks=(W + "submodule.yml",))
    lolbas = make_repo(
        root / "lolbas",
        {
            "yml/OSBinaries/Certutil.yml": lolbas_entry("Certutil.exe", "certutil.exe -urlcache -f http://x/a a"),
            "yml/OSBinaries/Hostile.yml": lolbas_entry("a|b.exe", "=cmd|' /c calc'!A0.exe"),
            **{
                f"yml/OSBinaries/Hostile{i}.yml": lolbas_entry(name, f"{name} --x")
                for i, name in enumerate(LOLBAS_HOSTILE_NAMES)
            },
        },
        {"yml/OSBinaries/Passwd.yml": "/etc/passwd"},
    )

    data_dir = root / "data"
    specs = [
        SourceSpec("sigma", url=str(sigma), branch="main", web_url="https://github.com/t/sigma"),
        SourceSpec("lolbas", url=str(lolbas), branch="main", web_url="https://github.com/t/lolbas"),
    ]
    started = time.monotonic()
    with time_limit(REFRESH_BUDGET_S):
        manifest = refresh(RefreshOptions(data_dir, specs, max_file_bytes=MAX_FILE_BYTES))
    elapsed = time.monotonic() - started

    exports = root / "exports"
    runs = {}
    for fmt, out in (
        ("csv", "all.csv"),
        ("json", "all.json"),
        ("jsonl", "all.jsonl"),
        ("markdown", "all.md"),
        ("markdown", "pages"),
    ):
        runs[out] = cli(
            "export", "--format", fmt, "--output", str(exports / out), "--data-dir", str(data_dir), cwd=root
        )
    stats = cli("stats", "--json", "--data-dir", str(data_dir), cwd=root)
    return {
        "root": root,
        "data_dir": data_dir,
        "manifest": manifest,
        "elapsed": elapsed,
        "marker": marker,
        "pwned": pwned,
        "sigma": sigma,
        "lolbas": lolbas,
        "exports": exports,
        "runs": runs,
        "stats": stats,
    }


@pytest.fixture()
def reader(hostile: dict) -> Iterator[IndexReader]:
    with IndexReader(hostile["data_dir"]) as r:
        yield r


def all_sorted(reader: IndexReader) -> list:
    return sorted(reader.all_mentions(), key=lambda m: (m.binary, m.source, m.path, m.line))


# --- 1. the refresh over hostile repositories -----------------------------------------------------


def test_refresh_finishes_in_bounded_time_with_file_errors(hostile: dict) -> None:
    manifest: Manifest = hostile["manifest"]
    assert manifest.exit_code == ExitCode.FILE_ERRORS, manifest.to_dict()
    assert hostile["elapsed"] < REFRESH_BUDGET_S
    assert {s.mode for s in manifest.sources.values()} == {"full"}
    errors = {e["path"] for e in manifest.file_errors}
    assert errors == {p for p, (status, _) in EXPECTED_PROBLEMS.items() if status == "error"}


def test_good_rules_are_indexed(reader: IndexReader) -> None:
    certutil = search(reader, "certutil.exe")
    sigma_paths = {m.path for m in certutil.mentions if m.source == "sigma" and m.role == "process"}
    assert sigma_paths == {p for p in GOOD if "certutil" in p}
    assert any(m.source == "lolbas" and m.role == "lolbas_entry" for m in certutil.mentions)
    assert [m.line for m in search(reader, "psr.exe", roles=["process"]).mentions] == [10]
    for path, (name, _) in HOSTILE_PATHS.items():
        assert {m.path for m in reader.search([name])} == {path}, name
    assert reader.state.files["sigma:" + W + "many_keys.yml"].status == "indexed"
    assert reader.search(["manykeys.exe"], role=["process"])


def test_every_bad_file_is_reported_with_its_reason(reader: IndexReader) -> None:
    files = reader.state.files
    for path, (status, reason) in EXPECTED_PROBLEMS.items():
        report = files.get(f"sigma:{path}")
        assert report is not None, path
        assert report.status == status and re.search(reason, report.reason), (path, report)
        assert report.mentions == 0 and not report.executables
    passwd = files["lolbas:yml/OSBinaries/Passwd.yml"]
    assert passwd.status == "skipped" and "symbolic link" in passwd.reason


def test_a_rule_whose_name_holds_a_newline_is_indexed(reader: IndexReader) -> None:
    report = reader.state.files["sigma:" + NEWLINE_PATH]
    assert report.status == "indexed", report
    assert {m.path for m in reader.search(["newlinepath.exe"])} == {NEWLINE_PATH}


def test_every_tree_entry_has_a_report(hostile: dict, reader: IndexReader) -> None:
    for source in ("sigma", "lolbas"):
        tree = git(hostile[source], "ls-tree", "-r", "-z", "--name-only", "main").split("\0")
        assert {f"{source}:{p}" for p in tree if p} <= set(reader.state.files), source


def test_nothing_outside_the_clone_is_read(hostile: dict, reader: IndexReader) -> None:
    marker = hostile["marker"]
    passwd_lines = [ln for ln in Path("/etc/passwd").read_text(errors="replace").splitlines() if ln.strip()]
    forbidden = [marker, "secret.exe", *passwd_lines[:3]]
    mentions = list(reader.all_mentions())
    texts = [m.snippet for m in mentions] + [m.title for m in mentions] + reader.binaries()
    texts.append(reader.state.to_json())
    for needle in forbidden:
        assert not any(needle in t for t in texts), needle
    assert not set(BAD_NAMES) & set(reader.binaries())
    # raw bytes of everything the indexer wrote, except the clones (checked object by object)
    data_dir: Path = hostile["data_dir"]
    written = [p for p in data_dir.rglob("*") if p.is_file() and "sources" not in p.relative_to(data_dir).parts]
    written += [p for p in hostile["exports"].rglob("*") if p.is_file()]
    for path in written:
        raw = path.read_bytes()
        for needle in forbidden:
            assert needle.encode() not in raw, (needle, path)
    for name in ("sigma", "lolbas"):
        objects = subprocess.run(
            ["git", "-C", str(data_dir / "sources" / f"{name}.git"), "cat-file", "--batch-all-objects", "--batch"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        for needle in forbidden:
            assert needle.encode() not in objects, (needle, name)
    assert hostile["stats"].stdout and marker not in hostile["stats"].stdout
    assert not hostile["pwned"].exists()


def test_stats_lists_the_problems(hostile: dict) -> None:
    done = hostile["stats"]
    assert done.returncode == 0, done.stderr
    problems = {(p["source"], p["path"]): p for p in json.loads(done.stdout)["problems"]}
    for path, (status, reason) in EXPECTED_PROBLEMS.items():
        problem = problems.get(("sigma", path))
        assert problem is not None, path
        assert problem["status"] == status and re.search(reason, problem["reason"]), problem
    assert ("lolbas", "yml/OSBinaries/Passwd.yml") in problems
    assert not any(p["path"] in GOOD for p in problems.values() if p["status"] != "indexed")


# --- exports of the hostile index, parsed back --------------------------------------------------


def test_exports_ran(hostile: dict) -> None:
    for out, done in hostile["runs"].items():
        assert done.returncode == 0, (out, done.stderr)
        assert "Traceback" not in done.stderr


def test_csv_cells_are_never_formulas_and_round_trip(hostile: dict, reader: IndexReader) -> None:
    with open(hostile["exports"] / "all.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    mentions = all_sorted(reader)
    assert len(rows) == len(mentions) > 0
    for row, m in zip(rows, mentions):
        for column, cell in row.items():
            assert not formula_like(cell), (column, cell)
            assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", cell), (column, cell)
        for column in ("binary", "path", "snippet", "title"):
            original = clean(getattr(m, column))
            expected = "'" + original if formula_like(original) else original
            assert row[column] == expected, (column, row[column], getattr(m, column))
    snippets = {row["snippet"] for row in rows}
    for formula in FORMULA_SNIPPETS:
        assert "'" + formula in snippets, formula
    assert {row["binary"].lstrip("'") for row in rows} >= {"+x", "-rf", "--output"}


def test_json_and_jsonl_carry_the_originals(hostile: dict, reader: IndexReader) -> None:
    mentions = all_sorted(reader)
    lines = (hostile["exports"] / "all.jsonl").read_text(encoding="utf-8").splitlines()
    exported = [json.loads(line) for line in lines]
    verdicts = {(r.source, r.path, r.binary): r.verdict for r in reader.all_rules()}
    assert [e.pop("verdict") for e in exported] == [verdicts[(m.source, m.path, m.binary)] for m in mentions]
    assert exported == [m.to_dict() for m in mentions]
    objects = json.loads((hostile["exports"] / "all.json").read_text(encoding="utf-8"))["binaries"]
    assert sorted(o["binary"] for o in objects) == reader.binaries()
    assert set(LOLBAS_HOSTILE_NAMES) - {NOT_A_NAME} <= set(reader.binaries())
    assert NOT_A_NAME not in reader.binaries()
    for obj in objects:
        exported = sorted((r["path"], x["line"], x["snippet"]) for r in obj["rules"] for x in r["mentions"])
        assert exported == sorted((m.path, m.line, m.snippet) for m in reader.search([obj["binary"]]))
    hostile_snippets = {m.snippet for m in mentions if m.path == HOSTILE_RULE_PATH}
    assert "- '\\tab\ttabbed.exe'" in hostile_snippets  # the tab kept as data
    assert "- '\\evil | `pipe` <img src=x onerror=alert(1)> evil.exe'" in hostile_snippets


def check_markdown(text: str) -> int:
    """Every misuse table row has six cells, code spans give the snippet back, no live markup."""
    rows = list(tables(text, "Source | Source File | Example | License | Role | Verdict"))
    for row in rows:
        assert len(row) == 6, row
    for line in text.split("\n"):
        bare = outside_code(line)
        assert not re.search(r"(?<!\\)<", bare), line
        assert "](javascript:" not in bare and "\x07" not in line, line
    return len(rows)


def test_markdown_single_file(hostile: dict, reader: IndexReader) -> None:
    text = (hostile["exports"] / "all.md").read_text(encoding="utf-8")
    assert check_markdown(text) == len(list(reader.all_mentions()))
    cells = {
        code_span_text(row[2]) for row in tables(text, "Source | Source File | Example | License | Role | Verdict")
    }
    assert cells == {clean(m.snippet) for m in reader.all_mentions()}


def test_markdown_pages_stay_in_the_output_directory(hostile: dict, reader: IndexReader) -> None:
    pages_dir: Path = hostile["exports"] / "pages"
    pages = sorted(pages_dir.iterdir())
    assert len(pages) == len(reader.binaries()) + 1
    for page in pages:
        assert page.resolve().parent == pages_dir.resolve(), page
        assert not page.name.startswith((".", "-")) and page.suffix == ".md", page.name
        assert re.fullmatch(r"[a-z0-9_][a-z0-9._-]*\.md|README\.md", page.name), page.name
        assert not page.is_symlink()
    index = (pages_dir / "README.md").read_text(encoding="utf-8")
    rows = list(tables(index, "Executable | Rule files"))
    assert len(rows) == len(reader.binaries())
    for row in rows:
        assert len(row) == 2, row
        target = re.fullmatch(r"\[.*\]\(([^()]+)\)", row[0]).group(1)
        assert (pages_dir / target).is_file(), target
    total = 0
    for page in pages:
        if page.name != "README.md":
            text = page.read_text(encoding="utf-8")
            assert text.split("\n", 1)[0].startswith("# ") and "\n" not in text.split("\n", 1)[0]
            total += check_markdown(text)
    assert total == len(list(reader.all_mentions()))


def test_markdown_links_point_at_the_rule_line(hostile: dict, reader: IndexReader) -> None:
    text = (hostile["exports"] / "all.md").read_text(encoding="utf-8")
    targets = set()
    for row in tables(text, "Source | Source File | Example | License | Role | Verdict"):
        match = re.fullmatch(r"\[.*\]\((\S+)\)", row[1])
        assert match, row[1]
        targets.add(unquote(html.unescape(match.group(1))))  # what a CommonMark renderer and a browser make of it
    assert targets == {unquote(m.url) for m in reader.all_mentions()}  # the same file and line


# --- 2. refused URLs and branches ---------------------------------------------------------------
#
# How "no git process was started" is checked: the CLI runs with PATH starting with a folder
# holding a `git` script that appends its arguments (and GIT_ALLOW_PROTOCOL) to a log file, then
# execs the real git. GitPython finds git through PATH (GIT_PYTHON_GIT_EXECUTABLE is removed from
# the environment), so every git the indexer starts, directly or through GitPython, is logged.
# GitPython itself runs `git version` when it is imported; that probe names no URL, so it is the
# only invocation allowed for a refused URL. The control test below shows the same shim does
# record the fetch of an accepted URL. PATH is changed only in the child's environment, so there
# is nothing to restore.


@pytest.fixture()
def shim(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "shim"
    folder.mkdir()
    log = tmp_path / "git-invocations.log"
    script = folder / "git"
    script.write_text(
        "#!/bin/sh\n"
        "{ printf 'ALLOW=%s' \"${GIT_ALLOW_PROTOCOL-unset}\"; "
        'for a in "$@"; do printf \' \\037%s\' "$a"; done; printf \'\\n\'; } >> "$GIT_SHIM_LOG"\n'
        f'exec {REAL_GIT} "$@"\n'
    )
    script.chmod(0o755)
    env = clean_env(PATH=f"{folder}{os.pathsep}{os.environ.get('PATH', '')}", GIT_SHIM_LOG=str(log))
    return log, env


def invocations(log: Path) -> list[tuple[str, list[str]]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        allow, *args = line.split(" \x1f")
        out.append((allow.removeprefix("ALLOW="), args))
    return out


def only_version_probes(log: Path) -> bool:
    return all(args == ["version"] for _, args in invocations(log))


REFUSED_URLS = [
    ("ext", "ext::sh -c touch% {pwned}", "git remote helpers"),
    ("ext-upper", "EXT::sh -c touch% {pwned}", "git remote helpers"),
    ("fd", "fd::17", "git remote helpers"),
    ("upload-pack", "--upload-pack=touch {pwned}", "starts with '-'"),
    ("dash", "-x", "starts with '-'"),
    ("http", "http://example.com/x.git", "transport 'http' not allowed"),
    ("git", "git://example.com/x.git", "transport 'git' not allowed"),
]


@pytest.mark.parametrize("form, url, reason", REFUSED_URLS, ids=[c[0] for c in REFUSED_URLS])
def test_refused_url_runs_no_git(form: str, url: str, reason: str, tmp_path: Path, shim) -> None:
    log, env = shim
    pwned = tmp_path / f"pwned-{uuid.uuid4().hex}"
    url = url.format(pwned=pwned)
    data_dir = tmp_path / "data"
    # `--sigma-url=VALUE`: one argv item, so a value starting with '-' reaches the indexer as a value
    done = cli("refresh", "--data-dir", str(data_dir), "--source", "sigma", f"--sigma-url={url}", cwd=tmp_path, env=env)
    assert done.returncode == ExitCode.USAGE, (done.returncode, done.stdout, done.stderr)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "refused URL" in lines[0] and reason in lines[0] and "sigma" in lines[0], lines
    assert "Traceback" not in done.stderr and not done.stdout.strip()
    assert not pwned.exists()
    assert not data_dir.exists()  # refused before the data directory was touched
    assert only_version_probes(log), invocations(log)


REFUSED_BRANCHES = ["--upload-pack=x", "a..b", "main:refs/remotes/origin/evil", "-x"]


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("tiny") / "sigma", {"rules/windows/a.yml": GOOD[next(iter(GOOD))]})


@pytest.mark.parametrize("branch", REFUSED_BRANCHES)
def test_refused_branch_runs_no_git(branch: str, tmp_path: Path, tiny_repo: Path, shim) -> None:
    log, env = shim
    data_dir = tmp_path / "data"
    done = cli(
        "refresh",
        "--data-dir",
        str(data_dir),
        "--source",
        "sigma",
        f"--sigma-url={tiny_repo}",
        f"--sigma-branch={branch}",
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode in (ExitCode.SOURCE_FAILED, ExitCode.USAGE), (done.returncode, done.stderr)
    errors = [ln for ln in done.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "refused branch name" in errors[0] and branch in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (data_dir / "sources" / "sigma.git").exists()
    assert not (data_dir / "index").exists()
    assert only_version_probes(log), invocations(log)


def test_refused_branch_is_a_usage_error_like_a_refused_url(tmp_path: Path, tiny_repo: Path) -> None:
    done = cli(
        "refresh",
        "--data-dir",
        str(tmp_path / "data"),
        "--source",
        "sigma",
        f"--sigma-url={tiny_repo}",
        "--sigma-branch=--upload-pack=x",
        cwd=tmp_path,
    )
    assert done.returncode == ExitCode.USAGE, (done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize(
    "url", ["ssh://-oProxyCommand=touch%20{pwned}/x.git", "ssh://u@-oProxyCommand=touch%20{pwned}/x.git"]
)
def test_ssh_host_that_is_an_option_runs_nothing(url: str, tmp_path: Path, shim) -> None:
    """Accepted by normalise_url (scheme ssh); git's own check must block it before ssh runs."""
    log, env = shim
    pwned = tmp_path / f"pwned-{uuid.uuid4().hex}"
    done = cli(
        "refresh",
        "--data-dir",
        str(tmp_path / "data"),
        "--source",
        "sigma",
        f"--sigma-url={url.format(pwned=pwned)}",
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode in (ExitCode.SOURCE_FAILED, ExitCode.USAGE), (done.returncode, done.stderr)
    assert not pwned.exists()
    assert "Traceback" not in done.stderr
    for allow, args in invocations(log):
        if args and args[0] in ("fetch", "clone", "ls-remote", "remote"):
            assert allow == "file:https:ssh", (allow, args)


CREDENTIAL_URLS = [
    "https://user:s3cret@127.0.0.1:9/x.git",
    "https://s3cret@127.0.0.1:9/x.git",
    "https://user:s3cret%40more@127.0.0.1:9/x.git",
]


@pytest.mark.parametrize("url", CREDENTIAL_URLS)
def test_credentials_are_never_printed_or_recorded(url: str, tmp_path: Path, shim) -> None:
    log, env = shim
    data_dir = tmp_path / "data"
    log_file = tmp_path / "refresh.log"
    runs = [
        cli(
            "refresh",
            "--data-dir",
            str(data_dir),
            "--source",
            "sigma",
            f"--sigma-url={url}",
            *extra,
            cwd=tmp_path,
            env=env,
        )
        for extra in (["--json"], ["--verbose", "--log-file", str(log_file)])
    ]
    for done in runs:
        assert done.returncode == ExitCode.SOURCE_FAILED, (done.returncode, done.stderr)
        assert "s3cret" not in done.stdout and "s3cret" not in done.stderr
        assert "***@127.0.0.1:9" in done.stdout + done.stderr
    assert json.loads(runs[0].stdout)["sources"]["sigma"]["url"] == "https://***@127.0.0.1:9/x.git"
    manifests = list((data_dir / "manifests").glob("*.json"))
    assert len(manifests) == 2
    recorded = [*manifests, log_file, *(data_dir / "index").rglob("*")]
    for path in recorded:
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path
    # control for the shim: the fetch was started, through PATH, with git's protocol allow-list
    fetches = [(allow, args) for allow, args in invocations(log) if args[:1] == ["fetch"]]
    assert len(fetches) == 2 and all(allow == "file:https:ssh" for allow, _ in fetches), fetches


def test_a_url_that_failed_is_not_reused_by_the_next_refresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    first = cli(
        "refresh",
        "--data-dir",
        str(data_dir),
        "--source",
        "sigma",
        "--sigma-url=https://user:s3cret@127.0.0.1:9/x.git",
        cwd=tmp_path,
    )
    assert first.returncode == ExitCode.SOURCE_FAILED
    # what a later `indexer refresh` (no --sigma-url, no $INDEXER_SIGMA_URL) would fetch
    monkeypatch.delenv("INDEXER_SIGMA_URL", raising=False)
    later = get("sigma").spec(None, None, clone_path(data_dir, "sigma"))
    assert later.url == "https://github.com/SigmaHQ/sigma.git", redact(later.url)


def test_a_bad_value_under_an_explicit_tag_does_not_abort_the_refresh(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "sigma",
        {
            "rules/windows/good.yml": GOOD[next(iter(GOOD))],
            "rules/windows/bool.yml": "title: !!bool x\n",
            "rules/windows/timestamp.yml": "title: !!timestamp x\n",
        },
    )
    data_dir = tmp_path / "data"
    done = cli(
        "refresh",
        "--data-dir",
        str(data_dir),
        "--source",
        "sigma",
        f"--sigma-url={repo}",
        "--sigma-branch=main",
        "--json",
        cwd=tmp_path,
    )
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    assert done.returncode == ExitCode.FILE_ERRORS
    errors = {e["path"]: e["reason"] for e in json.loads(done.stdout)["file_errors"]}
    assert set(errors) == {"rules/windows/bool.yml", "rules/windows/timestamp.yml"}, errors
    found = cli("search", "certutil.exe", "--data-dir", str(data_dir), cwd=tmp_path)
    assert found.returncode == 0, found.stderr
