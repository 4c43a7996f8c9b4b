"""Helpers the tests share: an upstream that can be moved, the CLI, a refresh to kill, Markdown table rows.

Nothing here imports the indexer: the tests judge it from the outside (git, the CLI, files).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_BIN = Path(sys.executable).parent / "indexer"
INDEXER = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "indexer"]
# Rule files as the project defines them (README / sources): read, the rest of a tree is not.
_RULE_PREFIXES = {"sigma": ("rules", "deprecated", "unsupported"), "lolbas": ("yml", "Archive-Old-Version")}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`indexer ARGS` on the data directory `data_dir` (given by the environment, as cron does)."""
    env = {**os.environ, "INDEXER_DATA_DIR": str(data_dir)}
    return subprocess.run([*INDEXER, *args], capture_output=True, text=True, env=env, timeout=120)


def split_row(row: str) -> list[str]:
    """Cells of a GFM table row. GFM (cmark-gfm's table_cell scanner) treats a pipe preceded by a
    backslash as part of the cell, whatever comes before the backslash; every other pipe splits."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)]


def is_rule_file(source: str, path: str) -> bool:
    top = path.split("/", 1)[0]
    ok_top = top in _RULE_PREFIXES[source] or (source == "sigma" and top.startswith("rules"))
    return "/" in path and ok_top and path.endswith((".yml", ".yaml"))


@dataclass
class Change:
    status: str  # A, M, D or R
    path: str
    old_path: str = ""


class Upstream:
    """A bare clone of a bundle whose branch can be set to any commit (upstream "moving")."""

    def __init__(self, bundle: Path, dest: Path, branch: str = "master") -> None:
        self.path = dest
        self.ref = f"refs/heads/{branch}"
        git("clone", "-q", "--bare", str(bundle), str(dest))
        self.tip = git("-C", str(dest), "rev-parse", self.ref).strip()
        self.first_parent = git("-C", str(dest), "rev-list", "--first-parent", self.ref).split()

    def back(self, n: int) -> str:
        """The commit n first-parent steps before the tip (`rev-list --first-parent | sed -n {n+1}p`)."""
        return self.first_parent[n]

    def move(self, commit: str) -> None:
        git("-C", str(self.path), "update-ref", self.ref, commit)

    def diff(self, before: str, after: str) -> list[Change]:
        out = git("-C", str(self.path), "diff", "--name-status", "-z", "-M", before, after)
        fields = out.split("\0")
        changes, i = [], 0
        while i < len(fields) and fields[i]:
            status = fields[i]
            if status[0] in "RC":
                changes.append(Change(status[0], fields[i + 2], fields[i + 1]))
                i += 3
            else:
                changes.append(Change(status[0], fields[i + 1]))
                i += 2
        return changes

    def show(self, commit: str, path: str) -> str:
        return git("-C", str(self.path), "show", f"{commit}:{path}")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}
    env["COLUMNS"] = "200"
    return env


def indexer(*args: str, data_dir: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INDEXER, *args, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=timeout, env=_env()
    )


def refresh_args(sigma: Path | str, lolbas: Path | str, *extra: str) -> list[str]:
    return ["refresh", "--sigma-url", str(sigma), "--lolbas-url", str(lolbas), *extra]


def sorted_export(data_dir: Path, out: Path) -> bytes:
    """`indexer export -f jsonl`, lines sorted: the whole index as comparable bytes."""
    done = indexer("export", "-f", "jsonl", "-o", str(out), data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    lines = out.read_bytes().splitlines(keepends=True)
    return b"".join(sorted(lines))


def current(data_dir: Path) -> str:
    return (data_dir / "index" / "CURRENT").read_text().strip()


def copy_data_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        found.append((int(entry), cmd))
    return found


def has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open."""
    target = str(Path(path).resolve())
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def popen_indexer(*args: str, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*INDEXER, *args, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


class RefreshRun:
    """`indexer refresh --verbose` in its own process group, stderr read line by line, so a
    test can SIGKILL it at a chosen point. `cleanup()` kills whatever of the group is left."""

    def __init__(self, args: list[str], data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [*INDEXER, *args, "--verbose", "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._watchdog = threading.Timer(120, self._kill_group)
        self._watchdog.start()

    def wait_for(self, marker: str) -> bool:
        """Read stderr until a line contains `marker` (True) or the process ends (False)."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if marker in line:
                return True
        return False

    def wait_for_workers(self, timeout: float = 10.0) -> list[tuple[int, str]]:
        """Wait until the refresh has forked parser processes (children that are not git)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = [c for c in children(self.proc.pid) if not c[1].startswith("git")]
            if workers:
                return workers
            time.sleep(0.01)
        return []

    def kill(self) -> int:
        """SIGKILL the refresh process itself (not its children), as `kill -9 <pid>` would."""
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.wait(timeout=30)

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def cleanup(self) -> None:
        self._watchdog.cancel()
        self._kill_group()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stderr is not None:
            self.proc.stderr.close()
