"""All git access: bare clones, fetch, the commit indexed, trees, changes, blobs, history, license.

Each source is kept as a bare clone under `<data dir>/sources/<name>.git`; files are read from git
objects, never from a work tree, so a symlink in a repository is a tree entry to skip, not a path
to follow. No other module runs git or touches GitPython: they ask a `Repository`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

import git

from .errors import SourceFailure
from .text import redact, redact_text

LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.Detection.Rules.md", "LICENSE.txt", "COPYING")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")
_SCP = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!/?-)[A-Za-z0-9._~/-]+$")
# Git itself refuses every other transport (ext::, fd::, git://, http://) for our commands.
_GIT_ENV = {"GIT_ALLOW_PROTOCOL": "file:https:ssh", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}


class SourceError(SourceFailure):
    """A source that cannot be used: refused URL, unreachable remote, missing branch."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        super().__init__(redact_text(reason))  # a git error may quote the URL in any form

    @property
    def where(self) -> str:
        return self.source


@dataclass(frozen=True)
class SourceSpec:
    """Where a source comes from. `url` may be a URL, a local repository or a git bundle."""

    name: str
    url: str
    branch: str = "master"
    web_url: str = ""

    @classmethod
    def resolve(
        cls, name: str, upstream: str, web: str, branch: str, url: str | None = None, clone: Path | None = None
    ) -> "SourceSpec":
        """The source `name` from, in order: `url`, $INDEXER_<NAME>_URL, the URL the existing
        clone was made from, `upstream`; `web` links to lines unless the URL is a GitHub one."""
        check_branch(name, branch)
        chosen = url or os.environ.get(env_var(name)) or (clone and _origin(clone)) or upstream
        web_url = _github_web(chosen) or web
        return cls(name, normalise_url(name, chosen), branch, web_url)


def env_var(name: str) -> str:
    """The environment variable that sets a source's URL: INDEXER_<NAME>_URL."""
    return f"INDEXER_{name.upper()}_URL"


@dataclass
class TreeEntry:
    path: str
    sha: str
    mode: str
    size: int


@dataclass
class Change:
    """One file changed between two commits: status A, M, D or R (with the old path)."""

    status: str
    path: str
    old_path: str = ""


def _origin(clone: Path) -> str:
    """The origin URL recorded in a clone's config ('' if none), as git reads it (quotes,
    `;`, `#` and backslashes in the value are git's to decode)."""
    if not (clone / "config").is_file():
        return ""
    done = subprocess.run(
        ["git", "config", "--file", str(clone / "config"), "--get", "remote.origin.url"],
        capture_output=True,
        env={**os.environ, **_GIT_ENV},
    )
    try:
        return done.stdout.decode("utf-8").rstrip("\n") if done.returncode == 0 else ""
    except UnicodeDecodeError:
        return ""


def clone_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "sources" / f"{name}.git"


def _github_web(url: str) -> str:
    match = re.match(r"^https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", url)
    return f"https://github.com/{match.group(1)}/{match.group(2)}" if match else ""


def normalise_url(source: str, url: str) -> str:
    """Accept https://, ssh://, scp-style, file:// and local paths; refuse every other form."""
    url = url.strip()
    if not url or url.startswith("-") or any(ch in url for ch in "\n\r\0"):
        raise SourceError(source, f"refused URL {redact(url)!r}: empty or starts with '-'")
    if "::" in url.split("/", 1)[0] or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*::", url):
        raise SourceError(source, f"refused URL {redact(url)!r}: git remote helpers (ext::, fd::) can run commands")
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    scheme = match.group(1).lower() if match else ""
    if scheme in ("https", "ssh"):
        try:
            parts = urlsplit(url)
            host, _port = parts.hostname or "", parts.port  # port: ValueError if not a number in 0-65535
        except ValueError as exc:  # "https://[::1/x", "https://h:abc/x", "https://h:99999/x"
            raise SourceError(source, f"refused URL {redact(url)!r}: {exc}") from None
        if not host:
            raise SourceError(source, f"refused URL {redact(url)!r}: no host name")
        if host.startswith("-") or "@-" in url.split("/")[2]:
            raise SourceError(source, f"refused URL {redact(url)!r}: a host name starting with '-' is an option to ssh")
        return url
    if scheme == "file":
        return url
    if scheme:
        raise SourceError(
            source,
            f"refused URL {redact(url)!r}: transport '{scheme}' not allowed "
            "(use https://, ssh://, file:// or a local path)",
        )
    if _SCP.match(url):
        return url
    if re.match(r"^[^/]*@[^/]*:", url):  # user:password@host:path, TOKEN@host:~x: not git's scp form
        raise SourceError(
            source, f"refused URL {redact(url)!r}: not an scp-style URL git accepts (user@host:path, no password)"
        )
    # a local path (a clone, a bundle): one that does not exist is the fetch's to report
    return str(Path(url).expanduser().resolve())


def check_branch(source: str, branch: str) -> None:
    if not _BRANCH.match(branch):
        raise SourceError(source, f"refused branch name {branch!r}")


class Repository:
    """A bare clone of one source in the data directory."""

    def __init__(self, spec: SourceSpec, path: Path) -> None:
        self.spec = spec
        self.path = path
        self._repo: git.Repo | None = None
        self._blobs: _CatFile | None = None  # for reads one at a time

    def _open(self) -> git.Repo:
        if self._repo is None:
            self._repo = git.Repo(self.path)
        return self._repo

    def close(self) -> None:
        if self._blobs is not None:
            self._blobs.close()
            self._blobs = None
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def _git(self) -> git.Git:
        cmd = self._open().git
        cmd.update_environment(**_GIT_ENV)
        return cmd

    def fetch(self) -> str:
        """Clone (first time) or fetch the branch; return the commit at its tip.

        A clone that git cannot read (deleted objects, no .git) is removed and made again.
        """
        check_branch(self.spec.name, self.spec.branch)
        if self.path.exists() and not self._healthy():
            self.close()
            shutil.rmtree(self.path)
        if not self.path.exists():
            self._init()
        repo_git = self._git()
        try:
            _, _, warnings = repo_git.fetch(
                "--no-tags",
                "--force",
                "--",
                self.spec.url,
                f"+refs/heads/{self.spec.branch}:refs/remotes/origin/{self.spec.branch}",
                with_extended_output=True,
            )
            if "shallow roots are not allowed" in warnings:  # git exits 0 and updates nothing
                raise SourceError(
                    self.spec.name,
                    f"{redact(self.spec.url)} is a shallow clone (made with --depth): "
                    "the index needs its whole history; use a full clone "
                    "('git fetch --unshallow' there)",
                )
            # recorded only once it worked: a later refresh without a URL uses this one
            has_origin = "origin" in repo_git.remote().split()
            repo_git.remote("set-url" if has_origin else "add", "origin", self.spec.url)
        except git.GitCommandError as exc:
            raise SourceError(self.spec.name, _git_reason(exc, self.spec)) from None
        return self.tip()

    def _init(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}-", dir=self.path.parent))
        git.Repo.init(tmp, bare=True).close()
        os.replace(tmp, self.path)

    def _healthy(self) -> bool:
        try:
            repo = git.Repo(self.path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            return False
        try:
            ref = f"refs/remotes/origin/{self.spec.branch}"
            if any(r.path == ref for r in repo.refs):
                repo.git.update_environment(**_GIT_ENV)
                repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{tree}}")
                repo.git.ls_tree("-r", "--name-only", ref)
            return True
        except (git.GitCommandError, ValueError, OSError):
            return False
        finally:
            repo.close()

    def tip(self) -> str:
        try:
            return self._git().rev_parse("--verify", f"refs/remotes/origin/{self.spec.branch}^{{commit}}")
        except git.GitCommandError:
            raise SourceError(self.spec.name, f"branch '{self.spec.branch}' not found") from None

    def has_commit(self, commit: str) -> bool:
        """Whether the clone holds this commit (asked of git's persistent batch process)."""
        if not re.fullmatch(r"[0-9a-f]{40}", commit or ""):
            return False
        try:
            return self._open().odb.info(bytes.fromhex(commit)).type == b"commit"
        except (ValueError, OSError, git.BadName, git.BadObject):
            return False

    def committed(self, commit: str) -> str:
        """When `commit` was committed, ISO 8601 with its offset."""
        return self._open().commit(commit).committed_datetime.isoformat()

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        """Whether `ancestor` is `commit` or one of its ancestors."""
        status = self._git().execute(
            ["git", "merge-base", "--is-ancestor", ancestor, commit], with_exceptions=False, with_extended_output=True
        )[0]
        return status == 0

    def raw_log(self, revs: str, parents: bool = False) -> str:
        """`git log --raw -M` of `revs`, oldest first, NUL-separated; each commit starts with
        "\\x01<sha> <committer date>" (history.update_history parses it), then with `parents`
        its parents' shas (chronicle's path history)."""
        fmt = "--format=%x01%H %cI" + (" %P" if parents else "")
        return self._git().log("--raw", "-M", "--no-abbrev", "-z", "--reverse", fmt, revs)

    def first_parent_log(self, revs: str) -> str:
        """`git log --first-parent --raw -M` of `revs` (diffs against the first parent, the root
        commit's too), oldest first, NUL-separated; each commit starts with
        "\\x01<sha> <committer time> <author time> <author date>" (chronicle.parse_log parses it)."""
        return self._git().log(
            "--first-parent",
            "--diff-merges=first-parent",
            "--root",
            "--raw",
            "-M",
            "--no-abbrev",
            "-z",
            "--reverse",
            "--format=%x01%H %ct %at %aI",
            revs,
        )

    def lineage_log(self, revs: str) -> str:
        """`git log --raw -M` of every commit in `revs` but merges, oldest first, in the form of
        `first_parent_log`: which commit made each version of each file (on any branch)."""
        return self._git().log(
            "--no-merges", "--raw", "-M", "--no-abbrev", "-z", "--reverse", "--format=%x01%H %ct %at %aI", revs
        )

    def tree(self, commit: str) -> list[TreeEntry]:
        """Every file of the commit's tree (blobs, links and submodules), with mode and size."""
        out = self._git().ls_tree("-r", "-l", "-z", "--full-tree", commit)
        entries = []
        for record in out.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, _kind, sha, size = meta.split()
            entries.append(TreeEntry(path, sha, mode, int(size) if size.isdigit() else 0))
        return entries

    def grep(self, commit: str, words: Iterable[str]) -> set[str]:
        """Paths of files at `commit` that may contain any of `words` (fixed strings, any case).

        A superset: the extraction lower-cases with Python, for which the Kelvin sign (U+212A)
        is a 'k', and git's case-insensitive fixed strings do not fold it (in the C locale) or
        fold it into every 'k' (in a UTF-8 one): files holding one are found by a second,
        case-sensitive search. Patterns go through a file, not the command line (a hundred
        thousand names exceed the argument list).
        """
        words = sorted(set(words))
        found = self._grep(commit, words, "-i") if words else set()
        if any("k" in w for w in words):
            found |= self._grep(commit, ["\u212a"])
        return found

    def _grep(self, commit: str, patterns: list[str], *options: str) -> set[str]:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="indexer-grep-", suffix=".txt") as handle:
            handle.write("".join(p + "\n" for p in patterns))
            handle.flush()
            done = subprocess.run(
                [
                    "git",
                    "--git-dir",
                    str(self.path),
                    "grep",
                    "-l",
                    "-z",
                    "-F",
                    "-I",
                    *options,
                    "-f",
                    handle.name,
                    commit,
                ],  # -z: paths as they are, never quoted
                capture_output=True,
                env={**os.environ, **_GIT_ENV},
            )
        if done.returncode == 1 and not done.stderr:  # nothing found
            return set()
        if done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SourceError(self.spec.name, f"git grep failed: {reason[-1] if reason else done.returncode}")
        prefix = f"{commit}:".encode()
        return {
            item[len(prefix) :].decode("utf-8", "surrogateescape")
            for item in done.stdout.split(b"\0")
            if item.startswith(prefix)
        }

    # Blobs are read one way: `git cat-file --batch`, a process per many blobs (fed by a thread
    # while they are read), or one kept open for reads one at a time.

    def read(self, sha: str) -> bytes:
        """The content of one blob."""
        if self._blobs is None:
            self._blobs = _CatFile(self)
        self._blobs.send([sha])
        return self._blobs.receive(sha)

    def read_at(self, commit: str, path: str) -> bytes:
        """The content of the file `path` at `commit`; SourceError if it has none there."""
        if any(ch in path for ch in "\n\r"):  # cat-file reads one object name per line
            raise SourceError(self.spec.name, f"no file {path!r} at {commit}")
        return self.read(f"{commit}:{path}")

    def read_many(self, shas: Sequence[str]) -> Iterator[bytes]:
        """The content of each blob in turn, from one `git cat-file --batch` for all of them."""
        blobs = _CatFile(self)
        feeder = threading.Thread(target=blobs.send, args=(shas,), daemon=True)
        feeder.start()
        try:
            for sha in shas:
                yield blobs.receive(sha)
        finally:
            blobs.stop()  # the feeder, if still writing, gets a broken pipe
            feeder.join()
            blobs.close()

    def changes(self, before: str, after: str) -> list[Change]:
        """Files added, modified, deleted or renamed between two commits (renames detected)."""
        out = self._git().diff("--name-status", "-z", "-M", before, after)
        fields = out.split("\0")
        changes: list[Change] = []
        i = 0
        while i < len(fields) and fields[i]:
            status = fields[i]
            if status.startswith(("R", "C")):
                changes.append(Change(status[0], fields[i + 2], fields[i + 1]))
                i += 3
            else:
                changes.append(Change(status[0], fields[i + 1]))
                i += 2
        return changes

    def license(self, entries: list[TreeEntry]) -> tuple[str, str]:
        """(license name, license file path) of a commit's tree, e.g. ("DRL 1.1", "LICENSE")."""
        by_path = {e.path: e for e in entries}
        for name in LICENSE_FILES:
            entry = by_path.get(name)
            if entry is not None and entry.mode.startswith("100") and entry.size < 1_000_000:
                return license_name(self.read(entry.sha).decode("utf-8", "replace")), name
        return "", ""


class _CatFile:
    """One `git cat-file --batch` process: object names in, their contents out, in order."""

    def __init__(self, repository: Repository) -> None:
        self._source, self._path = repository.spec.name, repository.path
        self._proc = subprocess.Popen(
            ["git", "--git-dir", str(self._path), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **_GIT_ENV},
        )

    def send(self, names: Iterable[str]) -> None:
        """Ask for these objects (a thread may do this while `receive` reads)."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write("".join(f"{name}\n" for name in names).encode("utf-8", "surrogateescape"))
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the reader stopped early
            pass

    def receive(self, name: str) -> bytes:
        """The content of the next object asked for, `name`."""
        assert self._proc.stdout is not None
        header = self._proc.stdout.readline().split()
        if len(header) != 3 or (len(name) == 40 and header[0].decode() != name):
            raise SourceError(self._source, f"object {name} cannot be read from {self._path}")
        size = int(header[2])
        data = self._proc.stdout.read(size)
        if len(data) != size or self._proc.stdout.read(1) != b"\n":  # git died halfway
            raise SourceError(self._source, f"object {name} read short from {self._path}")
        return data

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait()

    def close(self) -> None:
        self.stop()
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except (BrokenPipeError, OSError):
                pass


def license_name(text: str) -> str:
    """Name the license a license file's text states."""
    match = re.search(r"Detection Rule License \(DRL\)\s*([\d.]+)", text)
    if match:
        return f"DRL {match.group(1)}"
    if re.search(r"GNU GENERAL PUBLIC LICENSE\s+Version 3", text, re.IGNORECASE):
        return "GPL-3.0"
    if re.search(r"GNU GENERAL PUBLIC LICENSE\s+Version 2", text, re.IGNORECASE):
        return "GPL-2.0"
    if re.search(r"^\s*(?:The )?MIT License", text):
        return "MIT"
    if re.search(r"Apache License,?\s+Version 2\.0", text):
        return "Apache-2.0"
    if re.search(r"^\s*Elastic License 2\.0", text):
        return "Elastic-2.0"
    first = next((line.strip("# ").strip() for line in text.splitlines() if line.strip()), "")
    return first[:60]


def _git_reason(exc: git.GitCommandError, spec: SourceSpec) -> str:
    stderr = (exc.stderr or "").strip().replace(spec.url, redact(spec.url))
    lines = [ln.strip().removeprefix("stderr: ").strip("'").strip() for ln in stderr.splitlines() if ln.strip()]
    detail = next((ln for ln in lines if ln.startswith("fatal:")), lines[-1] if lines else str(exc.status))
    if "couldn't find remote ref" in detail:
        return f"branch '{spec.branch}' not found at {redact(spec.url)}"
    return f"cannot fetch {redact(spec.url)}: {detail.removeprefix('fatal: ')}"
