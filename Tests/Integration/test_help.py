"""Every command and subcommand answers --help with exit 0."""
from __future__ import annotations

import re

EXPECTED = {(), ("init",), ("issue",), ("inspect",), ("inspect", "tree"), ("inspect", "cert"), ("bundle",)}


def subcommands(help_text: str) -> list[str]:
    """Names listed under SUBCOMMANDS: in ArgumentParser's help."""
    if "SUBCOMMANDS:" not in help_text:
        return []
    section = help_text.split("SUBCOMMANDS:", 1)[1]
    names = []
    for line in section.splitlines():
        match = re.match(r"^  ([a-z][a-z0-9-]*)\b", line)
        if match:
            names.append(match.group(1))
        elif line and not line.startswith(" "):
            break
    return names


def test_every_command_has_help(sigil):
    seen, failures, pending = set(), [], [()]
    while pending:
        path = pending.pop()
        result = sigil.run(*path, "--help")
        seen.add(path)
        if result.returncode != 0 or "USAGE:" not in result.stdout:
            failures.append(str(result))
            continue
        pending.extend(path + (name,) for name in subcommands(result.stdout) if path + (name,) not in seen)
    assert not failures, "\n".join(failures)
    assert EXPECTED <= seen, f"missing commands: {sorted(EXPECTED - seen)}"
