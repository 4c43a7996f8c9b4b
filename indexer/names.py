"""Recognising executable names in strings: explicit file names, path tails, regex literals, bare names.

Pure functions over text, no YAML, no git: the part of extraction that property tests exercise.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Iterator

EXTENSIONS = (
    "exe",
    "dll",
    "sys",
    "cpl",
    "msc",
    "ocx",
    "ps1",
    "psm1",
    "psd1",
    "vbs",
    "vbe",
    "js",
    "jse",
    "wsf",
    "wsh",
    "hta",
    "bat",
    "cmd",
    "scr",
    "msi",
    "msp",
    "lnk",
    "inf",
    "jar",
    "py",
    "sh",
    "com",
    "drv",
    "xll",
)

# Letters and digits of any script belong to a name (`svсhost.exe` with a Cyrillic с is one
# name, never `host.exe`); `\w` is Unicode-aware here.
_NAME_START = r"\w$"
_NAME_CHARS = r"\w$~+\-"
_EXPLICIT = re.compile(
    rf"(?<![{_NAME_START}~+.])([{_NAME_START}][{_NAME_CHARS}.]*?\.(?a:{'|'.join(EXTENSIONS)}))"  # `x.ſh` is no .sh
    rf"(?![{_NAME_START}~\-]|\.[{_NAME_CHARS}])",  # `ntdll.dll+0x1a` is ntdll.dll
    re.IGNORECASE,
)
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
_URL_HOST_END = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s'\"<>]*", re.IGNORECASE)
# Script-framework names and sites that look like files: "node.js" is not a file of anybody's.
_NOT_FILES = frozenset(
    {
        "node.js",
        "vue.js",
        "react.js",
        "next.js",
        "nuxt.js",
        "three.js",
        "d3.js",
        "express.js",
        "angular.js",
        "chart.js",
        "ember.js",
        "backbone.js",
        "transfer.sh",
    }
)
# The visible tail of a right-to-left-override name (`\u202ecod.msc` shows as `csm.doc`): a
# document extension written backwards is never the stem of a program.
_REVERSED_EXTENSIONS = frozenset(
    ext[::-1]
    for ext in (
        "doc",
        "docx",
        "pdf",
        "rtf",
        "html",
        "htm",
        "xls",
        "xlsx",
        "ppt",
        "pptx",
        "jpg",
        "jpeg",
        "png",
        "gif",
        "mp3",
        "mp4",
        "avi",
        "mov",
        "zip",
        "csv",
        "odt",
        "ods",
    )
)
_UNIX_TAIL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+\-]*$")

# English words that are also the stems of known executables: never inferred from bare text.
COMMON_WORDS = frozenset(
    """
about access agent alert app apply archive at attrib audit auto backup base batch bind book boot
browse build cache call  catalog change chat check choice clean clear client clip close cloud code
color command compact compare config connect console control convert copy core count create cut
data date debug default define delete deploy desktop device diff dir discover disk display driver
dump echo edit enable end engine event exec expand  export extract file filter find finger
fix flash format free get grant graph group guard handle hash help history host  icon image
import info init input install  join key kill label last launch launcher line link list load
local lock log login logoff logon make manage manager map media memory message mode monitor more
mount move  name  network new node note  open output pack paint path  play policy
print process profile program protect proxy query read record recover  register remote remove
rename replace report reset restore run runner scan schedule script search secure security select
send server service set setup share shell show shutdown sign start status stop store sync system
task tasks test time timeout tools top tracker tree type update updater upload user users verify
version view wait watch web where win word write zip url clr browser services local dns target
obfuscated installer streams zero less signal desk gadget socket
""".split()
)


# Letters of other scripts drawn like ASCII ones (lower case: names are lowered). NFKC already
# folds full-width forms (`ｃ` -> `c`).
_LOOKALIKES = str.maketrans(
    {
        "а": "a",
        "е": "e",
        "і": "i",
        "ј": "j",
        "к": "k",
        "о": "o",
        "р": "p",
        "с": "c",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "һ": "h",
        "ӏ": "l",
        "ɡ": "g",
        "ı": "i",
        "α": "a",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
    }
)


def is_homoglyph(name: str) -> bool:
    """A name with non-ASCII letters that reads as an ASCII name (`svсhost.exe`, `ｃmd.exe`)."""
    if name.isascii():
        return False
    folded = unicodedata.normalize("NFKC", name).lower().replace("\u0307", "")  # `İ`.lower() keeps a dot above
    return folded.translate(_LOOKALIKES).isascii()


@dataclass(frozen=True)
class NameHit:
    """A name found in a string: the lower-case name and where it was written."""

    name: str
    start: int
    end: int
    inferred: bool = False  # the name is more than what is written (`\\smbexec` -> smbexec.exe)


def _url_hosts(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _URL_HOST_END.finditer(text)] if "://" in text else []


def _url_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _URL.finditer(text)] if "://" in text else []


def explicit_names(text: str) -> list[NameHit]:
    """File names with a known extension, on word boundaries: `"rundll32.exe,"` gives rundll32.exe.

    `.com` names count only after a path separator (`\\chcp.com`) and never look like a domain
    (`cdn.example.com`, `\\\\host.com\\share`); nothing in a URL's host counts, `.js`/`.com`
    never count inside a URL, and `Config.Msi\\` is a folder.
    """
    if "." not in text:
        return []
    hosts = _url_hosts(text)
    urls = _url_spans(text) if hosts else []
    hits: list[NameHit] = []
    for match in _EXPLICIT.finditer(text):
        start, end = match.span(1)
        name = match.group(1).lower()
        ext = name.rsplit(".", 1)[1]
        if name in _NOT_FILES or name.rsplit(".", 1)[0] in _REVERSED_EXTENSIONS:
            continue
        if any(a <= start < b for a, b in hosts):
            continue
        if ext in ("com", "js") and any(a <= start < b for a, b in urls):
            continue
        following = text[end : end + 1]
        if ext == "msi" and following == "\\":  # the C:\\Config.Msi\\ folder
            continue
        if ext == "com" and (
            start == 0 or text[start - 1] not in "\\/" or following in ("/", "\\") or "." in name[:-4]
        ):  # a domain: \\\\live.sysinternals.com\\Tools
            continue
        hits.append(NameHit(name, start, end))
    return hits


def path_tail(value: str) -> str:
    """The last component of a Windows or Unix path value, wildcards stripped ('' if none)."""
    tail = re.split(r"[\\/]", value.strip().strip("'\""))[-1]
    return tail.strip("*?").strip()


def value_names(value: str, whole_value: bool, process: bool = False) -> list[NameHit]:
    """Names in a detection value.

    whole_value: the field holds a path or a file name (Image, ImageLoaded, TargetFilename).
    process: the field names a process (Image, ParentImage, OriginalFileName): a `.com` name
    written alone counts (`MODE.COM`), and the last part of a Unix path counts even without an
    extension (`/curl`).
    """
    hits = explicit_names(value)
    if not whole_value or not process:
        return hits
    stripped = value.strip().strip("*").strip("'\"")
    if not hits and re.fullmatch(r"[A-Za-z0-9_-]+\.com", stripped, re.IGNORECASE):
        return [NameHit(stripped.lower(), value.find(stripped), value.find(stripped) + len(stripped))]
    if not hits and "/" in value and "\\" not in value:
        tail = path_tail(value).rstrip(".")
        if tail and _UNIX_TAIL.match(tail) and not tail.startswith(".") and tail in value:
            start = value.rfind(tail)
            return [NameHit(tail.lower(), start, start + len(tail))]
    return hits


_PROCESS_TAIL = re.compile(r"[^\W_][\w\-]*[^\W_]", re.ASCII)
_NOT_A_PROGRAM = re.compile(r"(?i)cve-?\d|^\d+$|^[A-Z0-9]+_[A-Z0-9_]+$")  # FX_VER_INTERNALNAME_STR: a constant
# Folders and vendors a process path is matched on (`Image|contains: '\\Temp'`): not programs.
_FOLDER_WORDS = frozenset(
    {
        "temp",
        "temporary",
        "tmp",
        "appdata",
        "users",
        "public",
        "programdata",
        "windows",
        "system32",
        "syswow64",
        "microsoft",
        "google",
        "desktop",
        "downloads",
        "documents",
        "antivirus",
        "program",
        "programs",
        "roaming",
    }
)


def process_tail(value: str, exact: bool, unix: bool) -> NameHit | None:
    """A program named without extension in a process field: `'\\smbexec'`, `'crontab'`, `'\\python'`.

    Only a value of one path component counts (`\\python`, `python`; never `\\AppData\\` nor
    `C:\\Tools\\x`). On Windows an exact value without separator is a pseudo-process (`System`,
    `Registry`, `vmmem`): nothing. The caller decides the name (`crontab` on Unix, `smbexec.exe`).
    """
    stripped = value.strip().strip("'\"").strip("*")
    body = stripped[1:] if stripped[:1] in ("\\", "/") else stripped
    if not body or (exact and not unix and body == stripped):
        return None
    if not _PROCESS_TAIL.fullmatch(body) or len(body) < 3 or _NOT_A_PROGRAM.search(body):
        return None
    if body.lower() in _FOLDER_WORDS or (body == stripped and body.lower() in COMMON_WORDS):
        return None  # after a separator an English word is a program's name (`\\choice`)
    if body == stripped and not unix and len(body) < 5:  # `endswith: 'tmp'`, `contains: 'msi'`: a fragment
        return None
    start = value.find(body)
    return NameHit(body.lower(), start, start + len(body))


# --- regular expressions ----------------------------------------------------------------------

_MAX_EXPANSIONS = 64
OPAQUE = "\x00"  # stands for regex syntax that is not a literal character


def regex_literals(pattern: str) -> list[str]:
    """Literal strings a simple regex spells out, with alternations expanded.

    `\\\\(cmd|powershell)\\.exe` gives `\\cmd.exe` and `\\powershell.exe`. Anchors, `\\s` and `.*`
    become a space (a boundary); anything else that is not a literal (classes, repetition, `.`,
    lookarounds) becomes OPAQUE, and a name touching OPAQUE is a fragment, never a name.
    """
    try:
        variants = _expand(pattern, 0)[0]
    except _Unsupported:
        variants = [_flatten(pattern)]
    return [v for v in dict.fromkeys(variants) if v.strip()]


def regex_names(pattern: str, whole_value: bool, process: bool = False) -> list[NameHit]:
    """Names a regex value spells out in full (a name touching a class or repetition is a fragment)."""
    hits = []
    for literal in regex_literals(pattern):
        for hit in value_names(literal, whole_value, process):
            if literal[hit.start - 1 : hit.start] != OPAQUE:  # `pow[a-z]+shell.exe` is no shell.exe
                hits.append(hit)
    return hits


class _Unsupported(Exception):
    pass


_CASE_PAIR = re.compile(r"\[([A-Za-z])([A-Za-z])\]")


def _expand(pattern: str, pos: int) -> tuple[list[str], int]:
    """Expand from pos to the closing ')' (or end). Returns (variants, position after)."""
    alternatives: list[list[str]] = []
    current = [""]
    i = pos
    while i < len(pattern):
        ch = pattern[i]
        if ch == ")":
            break
        if ch == "|":
            alternatives.append(current)
            current = [""]
            i += 1
            continue
        if ch == "(":
            j = i + 1
            if pattern.startswith("?:", j):
                j += 2
            elif pattern.startswith("?", j):  # (?i), lookarounds: not literal
                end = pattern.find(")", j)
                if end == -1:
                    raise _Unsupported
                i = end + 1
                if pattern[j : j + 2] not in ("?i", "?s", "?m"):
                    current = [c + OPAQUE for c in current]
                continue
            group, j = _expand(pattern, j)
            if j >= len(pattern) or pattern[j] != ")":
                raise _Unsupported
            j += 1
            if j < len(pattern) and pattern[j] == "?":
                group = group + [""]
                j += 1
            elif j < len(pattern) and pattern[j] in "*+{":
                group = [OPAQUE]
                j = _skip_quantifier(pattern, j)
            current = [c + g for c in current for g in group]
            if len(current) > _MAX_EXPANSIONS:
                raise _Unsupported
            i = j
            continue
        if ch == "[":
            pair = _CASE_PAIR.match(pattern, i)
            if pair and pair.group(1).lower() == pair.group(2).lower():
                piece, i = pair.group(1), pair.end()
            else:
                end = _class_end(pattern, i)
                # `[^"]{0,64}` and `["']` stand between words; `[a-z]+` spells part of a word
                body = re.sub(r"\\.", "", pattern[i + 1 : end - 1])
                separator = pattern.startswith("[^", i) or not re.search(r"[A-Za-z0-9_]", body)
                piece, i = (" " if separator else OPAQUE), end
        elif ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            piece = nxt if not nxt.isalnum() else (" " if nxt in "sb" else OPAQUE)
            i += 2
        elif ch in "^$":
            piece, i = " ", i + 1
        elif ch == ".":
            # `.*`, `.+`, `.{0,4}` stand for anything, like Sigma's `*`; a lone `.` is one unknown char,
            # except before an extension: `appvlp.exe` written unescaped means the dot
            wildcard = i + 1 < len(pattern) and pattern[i + 1] in "*+{?"
            if wildcard:
                piece, i = " ", i + 1
            else:
                piece, i = ("." if _DOT_EXTENSION.match(pattern, i) else OPAQUE), i + 1
        else:
            piece, i = ch, i + 1
        if i < len(pattern) and pattern[i] in "?*+{":
            piece = " " if piece == " " else OPAQUE
            i = _skip_quantifier(pattern, i)
        current = [c + piece for c in current]
    alternatives.append(current)
    return [v for alt in alternatives for v in alt], i


_DOT_EXTENSION = re.compile(rf"\.(?:{'|'.join(EXTENSIONS)})(?![A-Za-z0-9_])", re.IGNORECASE)


def _skip_quantifier(pattern: str, i: int) -> int:
    if pattern[i] == "{":
        end = pattern.find("}", i)
        i = end + 1 if end != -1 else len(pattern)
    else:
        i += 1
    if i < len(pattern) and pattern[i] in "?+":
        i += 1
    return i


def _class_end(pattern: str, i: int) -> int:
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


_FLAT_TOKEN = re.compile(r"\\.|\(\?[imsx]+\)|\(\?:|\(|\)|\[(?:\\.|[^\]])*\]|\{\d*,?\d*\}\??|[*+?]\??|.", re.DOTALL)


def _flatten(pattern: str) -> str:
    """Fallback for regexes too complex to expand: one pass, literals kept, the rest blanked.

    Escapes are read once (`\\\\rundll32` keeps its `r`); `|`, anchors, `\\s` and `.*` are
    boundaries; a quantified literal, a class or any other escape is OPAQUE.
    """
    out: list[str] = []
    for match in _FLAT_TOKEN.finditer(pattern):
        token = match.group(0)
        if token[0] in "*+?{" and len(token) > 1 or token in ("*", "+", "?"):
            if out and out[-1] not in (" ", ""):
                out[-1] = " " if out[-1] == OPAQUE + "." else OPAQUE  # `.*`: a boundary; `a+`: unknown
            continue
        if token.startswith("\\"):
            char = token[1:]
            out.append(char if not char.isalnum() else (" " if char in "sb" else OPAQUE))
        elif token == ".":
            out.append("." if _DOT_EXTENSION.match(pattern, match.start()) else OPAQUE + ".")
        elif token in ("|", "^", "$"):
            out.append(" ")
        elif token.startswith("(") or token == ")":
            out.append("")
        elif token.startswith("["):
            out.append(OPAQUE)
        else:
            out.append(token)
    return "".join(OPAQUE if piece == OPAQUE + "." else piece for piece in out)


# --- bare names ------------------------------------------------------------------------------

_BARE_LEFT = " \t'\"\\/(=,;&|`"
_BARE_RIGHT = " \t'\",;)&|`><:"  # `diskshadow> exec`: a prompt; `cmd</Command>`
# Words that name a protocol, a service, an encoding or a log source where prose uses them:
# "Reverse SSH Tunnel", "Strings In URI", "Sysmon Event ID 1", "Spawned by WinRM", "PoC".
# In a command line they are still the programs (`strings -a`, `base64 -d`).
# Quoted as a literal (`"hostname"`) or followed by "utility", "command", ... they are programs again.
# English words that are also programs' stems, used as words in prose far more often than as the
# programs: "users who", "security groups", "route table", "ransom notes", "malware loader",
# "Program Compatibility Wizard", "APT 29", "Electron applications", "Adobe" (the company), "never
# touch disk", "a JavaScript HTTP client" (the language).
PROSE_WORDS = frozenset(
    {
        "strings",
        "poc",
        "ssh",
        "base64",
        "defrag",
        "consent",
        "winrm",
        "telnet",
        "ftp",
        "tftp",
        "smb",
        "rdp",
        "ldap",
        "dns",
        "http",
        "https",
        "hostname",
        "who",
        "groups",
        "route",
        "notes",
        "loader",
        "wizard",
        "generation",
        "artifact",
        "antimalware",
        "adobe",
        "electron",
        "reboot",
        "env",
        "apt",
        "cat",
        "touch",
        "javascript",
    }
)
# English words among GTFOBins' and LOOBins' Unix programs (issue 17), and clouds, registries,
# databases and platforms named like their Unix programs: words in prose, as PROSE_WORDS, where
# the name is a Unix one ("sort by", "the screen", "security teams", "AWS EC2", "published to npm",
# "a MySQL service", "Docker images"); Windows programs of these names keep their own guards.
UNIX_WORDS = frozenset(
    """
    alpine bridge bundle cancel cargo column comm crash dialog expect fold forge genie highlight
    links look mail man paste pic poetry posh pry puppet rake ranger red rev screen snap passwd
    sort tee tic wall wish yarn say sharing profiles defaults disown ditto swift joe bee elvish pax
    cipher asterisk logger sysinfo teams slack everything excel
    aws npm pip docker mysql redis postgres psql kubernetes
    """.split()
)
# Words that name a program and the log source it writes (Sysmon, auditd): the program, except
# where the events, logs or fields are meant ("Sysmon Event ID 1", 'any Sysmon "X" event').
LOG_SOURCE_WORDS = frozenset({"sysmon", "auditd"})
_LOG_SOURCE_USE = re.compile(
    r"""(?:'s)?(?:\s+"[^"]*"|\s+\w+)?\s+(?:events?|eid|id\b|logs?|logging|data\b|fields?|channel|specific|users?|registry detection|config that)""",
    re.IGNORECASE,
)
# "Internet Explorer" is the browser, "Process Explorer" procexp, "Azure Storage Explorer" an
# application: none is explorer.exe.
# A prose word followed by an option (`nice -n`, `crontab -r`) is the program run.
_PROGRAM_WORD = re.compile(r" (?:utility|command|tool|client|program|binary)\b| -{1,2}\w")
_NOT_BEFORE = {"explorer": ("internet ", "process ", "internet_", "storage ")}  # Azure Storage Explorer
_NOT_AFTER = {
    "reg": (" key", " value"),  # "Reg Key": a registry key
    "java": (" script", "script"),  # "Java scripts": the language
    "python": (" software foundation",),  # an organisation
    "dotnet": (" clr", " framework", " core", " clickonce", " assembl"),
}  # .NET, not dotnet.exe
# In prose, what follows a name can make it something else: the service's web API ("Notion API",
# "Telegram API"), a file of that name or kind ("crontab file", "Executes cmd file", "java files";
# written in lower case: "Curl File Upload" and "desktopimgdownldr file creation" are the programs'),
# a package format ("Nuget/squirrel package", "the nuget package").
_PROSE_NOT_PROGRAM = re.compile(
    r"(?i:(?:/[\w\-]+)*\s+apis?\b)|(?:/[\w\-]+)*\s+files?\b"
    r"(?!\s+(?:creation|upload|download|write|access|event|deletion))"
)
# "Modifying Crontab", "Legitimate modification of crontab": what is modified is a file or a
# setting of that name (a program is run, not modified), when the name ends the phrase.
_MODIFIED = re.compile(r"(?:modifying|modification of|modifications to|modification to)(?: the)? $")
_PHRASE_END = re.compile(r"\s*(?:$|[.,;:)])")
_PACKAGE_FORMATS = frozenset({"nuget", "squirrel", "npm", "pip"})
_PACKAGE = re.compile(r"(?:/[\w\-]+)*\s+packages?\b(?! manager)", re.IGNORECASE)
# Seatbelt's `-group=chromium`, netsh's `name=Dropbox`: a value of an argument, not a program
_OPTION_VALUE = re.compile(r"(?:^|[\s'\"])(?:(?:--?|/)[\w\-]+|name)=$", re.IGNORECASE)


def bare_names(
    text: str, stems: dict[str, str], in_prose: bool = False, unix_stems: dict[str, str] | None = None
) -> Iterator[NameHit]:
    """Known executable stems written without extension (`rundll32 `, `cscript c:\\ads`).

    stems maps a lower-case stem to the file name it stands for. A stem counts only as a whole
    token of letters and digits of any script: `Firefox/3.6` is not firefox, `xcmd` is not cmd,
    `svсhost` is not host. Common English words never count (`stem_map` leaves them out); in
    prose (titles, descriptions) a stem may end a sentence, and protocol or log-source words
    (PROSE_WORDS) do not count. A value after `-option=` is an argument, never a program.
    unix_stems: where given, the tail of a Unix path (`/usr/bin/curl`) resolves with these only:
    a Unix path never names a Windows program.
    """
    lowered = text.lower()
    words = _WORD.findall(lowered)  # most strings name nothing: one set test instead of a loop
    if stems.keys().isdisjoint(words) and (
        unix_stems is None or "/" not in lowered or unix_stems.keys().isdisjoint(words)
    ):
        return
    urls = _url_spans(text) if in_prose and len(text) == len(lowered) else []  # a repository's name in a link
    for match in _WORD.finditer(lowered):
        stem = match.group(0)
        start = match.start()
        after_slash = start > 0 and lowered[start - 1] == "/"
        if after_slash and unix_stems is not None:
            if stem not in unix_stems and stem not in stems:
                continue
            path = _PATH_START.search(lowered, 0, start).group(0)  # type: ignore[union-attr]
            if path.startswith(("/", "~/", "./", "../")) and "\\" not in path:
                # `/cancel`, `/groups`: a Windows option; a Unix path has a folder (`/bin/sh`)
                name = unix_stems.get(stem) if path.count("/") > 1 else None
            else:
                name = stems.get(stem)
        else:
            name = stems.get(stem)
        if name is None:
            continue
        if after_slash and _DATA_PATH.search(lowered, 0, start):
            continue  # `/etc/passwd`, `/var/spool/mail`, `/var/log/dmesg`: files, not programs
        if (
            in_prose
            and (
                stem in PROSE_WORDS
                or stem in UNIX_WORDS
                and name == stem
                and not (not lowered[:start].strip() and _WRITTEN_COMMAND.match(lowered))
            )
            and not _PROGRAM_WORD.match(lowered, match.end())
            and lowered[start - 1 : start] not in ("'", '"', "`")
        ):
            continue
        end = match.end()
        if start > 0 and lowered[start - 1] not in _BARE_LEFT:
            continue
        if len(stem) < 3 and name == stem and (in_prose or not _command_at(lowered, start, end)):
            continue  # `sh`, `cp`: a two-letter Unix name only where a command starts
        if in_prose and stem in LOG_SOURCE_WORDS and _LOG_SOURCE_USE.match(lowered, end):
            continue
        if start > 0 and lowered[start - 1] == "=" and _OPTION_VALUE.search(lowered, 0, start):
            continue
        if stem in _NOT_BEFORE and lowered[:start].endswith(_NOT_BEFORE[stem]):
            continue
        if stem in _NOT_AFTER and lowered.startswith(_NOT_AFTER[stem], end):
            continue
        if in_prose and (
            _PROSE_NOT_PROGRAM.match(text if len(text) == len(lowered) else lowered, end)
            or stem in _PACKAGE_FORMATS
            and _PACKAGE.match(lowered, end)
            or _MODIFIED.search(lowered, 0, start)
            and _PHRASE_END.match(lowered, end)
        ):
            continue
        if lowered.startswith(":/", end):  # `ftp://`: a URL scheme
            continue
        if urls and any(a <= start < b for a, b in urls):
            continue
        if end < len(lowered) and lowered[end] not in _BARE_RIGHT:
            if lowered[end] == "/" and lowered[end + 1 : end + 2].isalpha():  # "Curl/Wget", not "Firefox/3.6"
                pass
            elif lowered[end] == "*" and lowered[end + 1 : end + 2] != ".":  # `whoami*`, not `python3*.dll`
                pass
            elif not (in_prose and lowered[end] in ".:!?" and (end + 1 == len(lowered) or lowered[end + 1] in " .")):
                continue
        yield NameHit(name, start, end)


_WORD = re.compile(r"\w(?:[\w\-]*\w)?")
# A command line written in prose or a comment: the text starts with the name, and a path or an
# option follows it (`# defaults read /Library/Preferences/x`)
_WRITTEN_COMMAND = re.compile(r"\s*[\w\-]+ (?:[\w\-]+ )?[/\-~]")
_COMMAND_BEFORE = re.compile(r"(?:^|[;|&(`]|\$\()\s*$")
_COMMAND_AFTER = frozenset(" \t;|&)'\"`<>")


def _command_at(text: str, start: int, end: int) -> bool:
    """Whether a word starts a command (`cp x`, `; rm -f`, `| sh`, `/bin/sh`) and ends there."""
    if end < len(text) and text[end] not in _COMMAND_AFTER:
        return False
    if text[start - 1 : start] == "/":
        return _in_unix_path(text, start)
    return _COMMAND_BEFORE.search(text, 0, start) is not None


# A program's folder on Unix and macOS: `/usr/bin/`, `/sbin/`, `/libexec/`, `X.app/Contents/MacOS/`
_PROGRAM_PATH = re.compile(
    r"(?<![:/\w])(?:[^\s'\"`=(,;|&<>:\\]*/)?(?:bin|sbin|libexec|macos)/([a-z0-9_][a-z0-9_.+\-]*)(?=$|[\s'\"`;|&)<>])",
    re.IGNORECASE,
)


def unix_program_paths(text: str) -> list[NameHit]:
    """Programs named by their path in a program folder (`/usr/local/bin/frpc`, `.../Contents/MacOS/msupdate`),
    known or not: the tail, a Unix name (inferred). Never in a URL nor a Windows path."""
    lowered = text.lower()
    if "bin/" not in lowered and "libexec/" not in lowered and "macos/" not in lowered:
        return []  # most strings with a slash name no program folder: three substring tests
    urls = _url_spans(text)
    hits = []
    for match in _PROGRAM_PATH.finditer(text):
        start, end = match.span(1)
        name = match.group(1).rstrip(".").lower()
        if not name or any(a <= start < b for a, b in urls) or _NOT_A_PROGRAM.search(name):
            continue
        if name.rpartition(".")[2] in EXTENSIONS:  # `.../bin/bash.exe`: a Windows name, explicit
            continue
        hits.append(NameHit(name, start, start + len(name), inferred=True))
    return hits


_PATH_START = re.compile(r"[^\s'\"`=(,;|&]*$")
# Unix folders of data, configuration and devices: a name there is a file (`/etc/passwd`)
_DATA_PATH = re.compile(
    r"(?:^|[\s'\"`=(,;|&])(?:/etc|/var|/proc|/dev|/boot|/run|/home|/root|~)(?:/[^\s'\"`=(,;|&]*)?/$"
)


def _in_unix_path(text: str, end: int) -> bool:
    """Whether the path ending at `end` (before a name) is a Unix one: `/usr/bin/`, `~/`, `./`."""
    path = _PATH_START.search(text, 0, end).group(0)  # type: ignore[union-attr]
    return path.startswith(("/", "~/", "./", "../")) and "\\" not in path


WINDOWS_PREFIX = "windows:"  # a Windows program named without extension (`\\smbexec`) in `executables`
MODULE_PREFIX = "module:"  # a DLL a rule watches being loaded (ImageLoaded) in `executables`


SHORT_WORDS = frozenset({"as", "go"})  # two-letter programs (as, go) that are words in any command line
UNIX_PREFIX = "unix:"  # a Unix program whose name has a dot (`ld.so`) in `executables`


def known_stems(executables: Iterable[str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(Windows, Unix, DLL) stem maps from the names files show to be executables (the DLL map
    keeps common words: see stem_map).

    `x.ext` is a Windows name, `x` a Unix one, `windows:x` a Windows program written without
    extension, `unix:x` a Unix program (GTFOBins, LOOBins), `module:x.dll` a loaded DLL (its
    stem counts only in text that speaks of DLLs). Unix stems may have two letters (`sh`, `cp`):
    bare_names takes them only where a command starts.
    """
    windows: list[str] = []
    unix: list[str] = []
    modules: list[str] = []
    for name in executables:
        if name.startswith(WINDOWS_PREFIX):
            windows.append(name[len(WINDOWS_PREFIX) :])
        elif name.startswith(UNIX_PREFIX):
            unix.append(name[len(UNIX_PREFIX) :])
        elif name.startswith(MODULE_PREFIX):
            modules.append(name[len(MODULE_PREFIX) :])
        else:
            (windows if "." in name else unix).append(name)
    named = stem_map((n for n in unix if "." not in n), min_length=2)  # `ld.so` is never a bare word
    unix_map = {stem: name for stem, name in named.items() if stem not in SHORT_WORDS}
    return stem_map(windows), unix_map, stem_map(modules, keep_common=True)


def stem_map(names: Iterable[str], min_length: int = 3, keep_common: bool = False) -> dict[str, str]:
    """Map bare stems to executable names: `rundll32` -> `rundll32.exe` (an .exe wins a tie).

    Stems that are common English words (`remote`, `handle`) are left out, unless keep_common
    (DLLs: "CLR DLL" names clr.dll; extract.infer keeps such stems for "X DLL" phrases).
    """
    result: dict[str, str] = {}
    for name in sorted(names):
        if not keep_common and (name.rpartition(".")[0] or name) in COMMON_WORDS:
            continue
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        if len(stem) < min_length or not _UNIX_TAIL.match(stem):
            continue
        if stem not in result or ext == "exe":
            result[stem] = name
    return result
