"""Elastic Common Schema fields: what an Elastic rule's field says about the binary its value names.

The roles are Sigma's (`model.Role`), so the verdicts are the same: `process.name` is Sigma's
`Image`, `process.parent.name` its `ParentImage`, `dll.name` its `ImageLoaded`, and so on.
Windows event fields under `winlog.event_data.` keep their Sigma name and role (`ParentImage`,
`TargetImage`, `ServiceFileName`).
"""

from __future__ import annotations

import re

from ..extract import field_role

_ROLES = {
    "process.name": "process",
    "process.executable": "process",
    "process.pe.original_file_name": "original_filename",
    "process.parent.name": "parent",
    "process.parent.executable": "parent",
    "process.parent.pe.original_file_name": "parent",
    "process.command_line": "command_line",
    "process.args": "command_line",
    "process.parent.command_line": "command_line",
    "process.parent.args": "command_line",
    "process.title": "command_line",
    "process.working_directory": "file",
    "process.parent.working_directory": "file",
    "dll.name": "loaded_module",
    "dll.path": "loaded_module",
    "dll.pe.original_file_name": "loaded_module",
    "file.name": "file",
    "file.path": "file",
    "file.pe.original_file_name": "file",
    "file.target_path": "file",
    "file.ext.original.name": "file",
    "file.ext.original.path": "file",
    "target.process.name": "target",
    "target.process.executable": "target",
    "target.process.pe.original_file_name": "target",
    "powershell.file.script_block_text": "command_line",
}
# ancestors beyond the parent: the session, group or entry leader (Linux), the effective parent (Windows)
_ANCESTOR = re.compile(
    r"process\.(?:parent\.)?(?:session_leader|group_leader|entry_leader|ext\.effective_parent)(?:\.parent)?\."
    r"(?:name|executable)"
)
# fields whose values are never file names (besides those Sigma's field_role refuses)
_NEVER = re.compile(
    r"^(?:event|host|user|agent|data_stream|source|destination|network|ecs|cloud|observer|related|orchestrator|"
    r"container|threat|rule|kibana|signal|tls|service)\.|\.(?:pid|entity_id|id|hash|hash\.\w+|args_count|"
    r"extension|size|type|code_signature\.\w+|thread\.\w+|uptime|exit_code|interactive)$|^process\.ext\.(?:api|token)\."
)


def ecs_role(field: str) -> str | None:
    """The role of an ECS (or Elastic Endpoint) field, or None when its values never name a file.

    Case is ignored (`Target.process.name`, `file.Ext.original.path`); the optional marker of
    EQL (`?process.pe.original_file_name`) too.
    """
    key = field.lstrip("?").lower()
    if key.endswith((".caseless", ".text")):  # the same value, another mapping of the field
        key = key.rsplit(".", 1)[0]
    role = _ROLES.get(key)
    if role is not None:
        return role
    if key.startswith("registry."):
        return "registry"
    if _ANCESTOR.fullmatch(key):
        return "parent"
    if key.startswith("winlog.event_data."):
        return field_role(field.split(".", 2)[2])
    if _NEVER.search(key):
        return None
    return field_role(key.rsplit(".", 1)[-1]) if "." not in key else _other(key)


def _other(key: str) -> str | None:
    """A field ECS does not name above: `other`, unless its last part is one Sigma never reads
    (`dns.question.name` is a host, `url.domain` a domain)."""
    last = key.rsplit(".", 1)[-1]
    if last in ("name", "path", "executable") and key.split(".")[0] in ("dns", "url", "http", "tls", "email"):
        return None
    return None if field_role(last) is None else "other"
