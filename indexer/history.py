"""Where each rule file has lived: renames and the last content of every path, from git history.

One pass of `git log --raw -M` over the branch gives, for every path that ever held a rule,
the blob it last held (even after it was deleted or moved), and every rename. It is computed
once per data directory and extended by later refreshes with only the new commits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .atomic import write_atomic

if TYPE_CHECKING:  # a type only: history's readers (xref on the search path) never load GitPython
    from .repository import Repository

# a rule file's id: YAML `id:` (Sigma, Splunk) or TOML `rule_id = "..."` (Elastic)
_ID = re.compile(rb"^(?:id:\s*['\"]?|rule_id\s*=\s*['\"])([0-9A-Za-z-]{8,})", re.MULTILINE)


class LastContent(NamedTuple):
    """The blob a path last held; for a path "deleted" or "renamed" away, `commit` is the one
    that removed it (the blob is its parent's content). Stored as a JSON list of the four."""

    blob: str
    commit: str
    date: str
    status: str  # "present" | "renamed" | "deleted"


@dataclass
class PathHistory:
    """The history of a repository's paths up to `commit`."""

    commit: str = ""
    last: dict[str, LastContent] = field(default_factory=dict)  # path -> what it last held
    renames: list[list[str]] = field(default_factory=list)  # [old, new, commit, date], oldest first
    _back: dict[str, list[tuple[int, str, str, str]]] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        return json.dumps({"commit": self.commit, "last": self.last, "renames": self.renames})

    @classmethod
    def from_json(cls, text: str) -> "PathHistory":
        """The history as stored; ValueError if the text is not one (a damaged file)."""
        data = json.loads(text)
        if not (
            isinstance(data, dict)
            and isinstance(data.get("commit"), str)
            and isinstance(data.get("last"), dict)
            and all(
                isinstance(v, list) and len(v) == 4 and all(isinstance(x, str) for x in v)
                for v in data["last"].values()
            )
            and isinstance(data.get("renames"), list)
            and all(isinstance(r, list) and len(r) == 4 and all(isinstance(x, str) for x in r) for r in data["renames"])
        ):
            raise ValueError("not a path history")
        return cls(data["commit"], {p: LastContent(*v) for p, v in data["last"].items()}, data["renames"])

    def former_paths(self, path: str) -> list[dict[str, str]]:
        """The paths a file had before `path`, newest first, with the commit of each move.

        A path renamed away and back again keeps its whole chain: each step back takes the
        latest rename into the path that happened before the step already taken.
        """
        if self._back is None:
            self._back = {}
            for index, (old, new, commit, date) in enumerate(self.renames):
                self._back.setdefault(new, []).append((index, old, commit, date))
        out: list[dict[str, str]] = []
        start, before = path, len(self.renames)
        for _ in range(len(self.renames)):
            earlier = [r for r in self._back.get(path, []) if r[0] < before]
            if not earlier:
                break
            before, old, commit, date = earlier[-1]
            out.append({"path": old, "moved_in": commit, "date": date})
            path = old
        # a rename reverted and made again shows each path once, at its latest move
        seen = {start}
        return [step for step in out if not (step["path"] in seen or seen.add(step["path"]))]


def _apply_log(history: PathHistory, log: str) -> None:
    commit = date = ""
    tokens = log.split("\0")
    i = 0
    while i < len(tokens):
        token = tokens[i].lstrip("\n")
        i += 1
        if token.startswith("\x01"):
            commit, _, date = token[1:].partition(" ")
            date = date.strip()
        elif token.startswith(":"):
            meta = token.split()
            old_blob, new_blob, status = meta[2], meta[3], meta[4]
            path = tokens[i]
            i += 1
            if status[0] in "RC":
                new_path = tokens[i]
                i += 1
                history.last[path] = LastContent(old_blob, commit, date, "renamed")
                history.last[new_path] = LastContent(new_blob, commit, date, "present")
                if status[0] == "R":
                    history.renames.append([path, new_path, commit, date])
            elif status == "D":
                history.last[path] = LastContent(old_blob, commit, date, "deleted")
            else:
                history.last[path] = LastContent(new_blob, commit, date, "present")


def update_history(repo: Repository, tip: str, store: Path) -> PathHistory:
    """The history up to `tip`, extended from what `store` holds (computed whole the first time)."""
    history = PathHistory()
    try:
        history = PathHistory.from_json(store.read_bytes().decode("utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: computed whole again
        pass
    if history.commit == tip:
        return history
    if history.commit and repo.has_commit(history.commit) and repo.is_ancestor(history.commit, tip):
        revs = f"{history.commit}..{tip}"
    else:
        history, revs = PathHistory(), tip
    _apply_log(history, repo.raw_log(revs))
    history.commit = tip
    store.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(store, history.to_json())
    return history


def rule_id_of(blob: bytes) -> str:
    """The first `id:` (YAML) or `rule_id =` (TOML) of a rule file's text ('' if none)."""
    match = _ID.search(blob)
    return match.group(1).decode() if match else ""
