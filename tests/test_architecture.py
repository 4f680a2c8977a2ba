"""The import rules of ../shared/ARCHITECTURE.md, checked by walking every module's imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "stompbroker"
ROOMS = ("codec", "core", "session", "store", "transport", "config", "testing")

# room -> (allowed third-party module prefixes, forbidden project rooms)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "codec": ((), ("core", "session", "store", "transport", "config", "service", "tap")),
    "core": (
        ("zope.interface", "twisted.internet.defer", "twisted.internet.task", "twisted.logger"),
        ("codec", "session", "store", "transport", "config", "service", "tap"),
    ),
    "session": (("twisted", "zope.interface"), ("store", "transport", "config", "service", "tap")),
    "store": (
        ("zope.interface", "twisted.internet.defer", "twisted.internet.threads", "twisted.logger"),
        ("codec", "session", "transport", "service", "tap"),
    ),
    # wsproto (and h11 under it) is what twisted[websocket] brings: the sans-IO WebSocket
    # and HTTP/1.1 machines the WebSocket adapter drives.
    "transport": (
        ("twisted", "zope.interface", "wsproto", "h11"),
        ("store", "config", "service", "tap"),
    ),
    "config": (("yaml",), ("codec", "core", "session", "store", "transport", "service", "tap")),
    # In-memory clients for users' tests: sessions on Twisted's test transport and Clock.
    "testing": (
        ("twisted.internet.testing", "twisted.internet.task"),
        ("store", "transport", "config", "service", "tap"),
    ),
}


def _room(path: Path) -> str | None:
    relative = path.relative_to(PACKAGE).parts
    name = relative[0].removesuffix(".py")
    return name if name in ROOMS else None


def _imports(path: Path, package: str | None = None) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def _violations(path: Path, room: str, package: str | None = None) -> list[str]:
    allowed, forbidden = RULES[room]
    found = []
    for name in _imports(path, package):
        top = name.split(".")[0]
        if top == "stompbroker":
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else ""
            if target in forbidden:
                found.append(name)
        elif top == "__future__" or top in sys.stdlib_module_names:
            continue
        elif not any(
            # "from twisted.internet import defer" yields "twisted.internet" too: judge the leaf.
            name == a or name.startswith(a + ".") or a.startswith(name + ".")
            for a in allowed
        ):
            found.append(name)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _room(p) is not None)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_room_imports_only_what_it_may(path: Path) -> None:
    """Each room imports only the rooms and libraries ARCHITECTURE.md allows it."""
    room = _room(path)
    assert room is not None
    assert _violations(path, room) == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself flags a codec module that imports Twisted or the core."""
    bad = tmp_path / "probe.py"
    bad.write_text("import twisted\nfrom stompbroker.core import Broker\nfrom . import _frame\n")
    assert _violations(bad, "codec", "stompbroker.codec") == [
        "twisted",
        "stompbroker.core",
        "stompbroker.core.Broker",
    ]


def test_plugin_imports_no_project_module() -> None:
    """The twistd plugin file imports only twisted.application.service at import time."""
    plugin = ROOT / "twisted" / "plugins" / "stompbroker_plugin.py"
    assert _imports(plugin) == [
        "twisted.application.service",
        "twisted.application.service.ServiceMaker",
    ]
