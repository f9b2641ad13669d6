"""Global options (--data-dir, --controller, --timeout) accepted after the subcommand too:
`msspctl tenant list --data-dir D` means `msspctl --data-dir D tenant list`.

click only reads a group's options before its subcommand. Each global option found after the
command is moved in front of it, unless the command declares an option of that name itself (as
`server run --data-dir` does), which then keeps it. Nothing after `--` is touched.
"""

from __future__ import annotations

from typing import Any

GLOBAL_OPTIONS = ("--data-dir", "--controller", "--timeout")


def _leaf(root: Any, argv: list[str]) -> tuple[Any, int]:
    """The command argv names and the index just past its name (groups are known by their
    `commands`: Typer's group class need not be click's own)."""
    node, i = root, 0
    while i < len(argv) and isinstance(getattr(node, "commands", None), dict):
        token = argv[i]
        if token == "--":
            break
        if token.startswith("-"):
            i += 1 if "=" in token or token not in GLOBAL_OPTIONS else 2  # root options before the command
            continue
        sub = node.commands.get(token)
        if sub is None:
            break
        node, i = sub, i + 1
    return node, i


def _declares(command: Any, option: str) -> bool:
    return any(option in getattr(p, "opts", ()) for p in command.params)


def hoist(root: Any, argv: list[str]) -> list[str]:
    leaf, start = _leaf(root, argv)
    if leaf is root:
        return argv
    moved: list[str] = []
    kept = argv[:start]
    rest = argv[start:]
    i = 0
    while i < len(rest):
        token = rest[i]
        if token == "--":
            kept.extend(rest[i:])
            break
        name = token.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and not _declares(leaf, name):
            width = 1 if "=" in token else 2
            moved.extend(rest[i:i + width])
            i += width
            continue
        kept.append(token)
        i += 1
    return moved + kept
