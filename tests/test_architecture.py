"""The room table of ARCHITECTURE.md as an allowlist, checked by walking every module's imports.

Each module belongs to exactly one room. A room may import its own modules, the standard
library, the project rooms and the third-party module prefixes its row lists, and nothing
else; from another room only the facade, never a private ``_x`` module. Only the composition
root imports the global reactor. ARCHITECTURE.md holds the same table (a test compares them).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "ARCHITECTURE.md"
PLUGIN = "twisted/plugins/stompbroker_plugin.py"


@dataclass(frozen=True)
class Room:
    """One row of the table: where its modules are and what they may import."""

    #: Paths from the project root; one ending in "/" is a whole package.
    modules: tuple[str, ...]
    #: Project rooms it may import (its own is always allowed).
    rooms: tuple[str, ...] = ()
    #: Third-party module prefixes it may import (the standard library is always allowed).
    libraries: tuple[str, ...] = ()


# Mirrors the table in ARCHITECTURE.md (test_doc_table_matches_this_table keeps them equal).
ROOMS: dict[str, Room] = {
    "package": Room(("stompbroker/__init__.py",)),
    "codec": Room(("stompbroker/codec/",)),
    "core": Room(
        ("stompbroker/core/",),
        libraries=(
            "zope.interface",
            "twisted.cred",
            "twisted.internet.defer",
            "twisted.internet.task",
            "twisted.logger",
        ),
    ),
    "session": Room(("stompbroker/session/",), ("codec", "core"), ("twisted", "zope.interface")),
    "store": Room(
        ("stompbroker/store/",),
        ("core",),
        (
            "zope.interface",
            "twisted.internet.defer",
            "twisted.internet.interfaces",
            "twisted.internet.threads",
            "twisted.logger",
            "psycopg",
        ),
    ),
    "config": Room(("stompbroker/config/",), libraries=("yaml",)),
    # wsproto is what twisted[websocket] brings: the sans-IO WebSocket machine the upgrade
    # hands the connection to (twisted.web reads the HTTP request).
    "transport": Room(
        ("stompbroker/transport/",),
        ("codec", "session", "core"),
        ("twisted", "zope.interface", "wsproto", "prometheus_client"),
    ),
    "logs": Room(("stompbroker/logs.py",), libraries=("twisted.logger", "zope.interface")),
    "tools": Room(("stompbroker/admin.py", "stompbroker/passwd.py"), ("core",)),
    "wiring": Room(
        ("stompbroker/monitor.py", "stompbroker/security.py"),
        ("package", "config", "core", "transport"),
        ("twisted",),
    ),
    "root": Room(
        ("stompbroker/tap.py", "stompbroker/service.py", "stompbroker/reloading.py"),
        ("package", "codec", "config", "core", "session", "store", "transport", "wiring"),
        ("twisted", "zope.interface"),
    ),
    # In-memory clients for users' tests: sessions on Twisted's test transport and Clock.
    "testing": Room(
        ("stompbroker/testing.py",),
        ("codec", "core", "session"),
        ("twisted.internet.testing", "twisted.internet.task"),
    ),
    "plugin": Room((PLUGIN,), libraries=("twisted.application.service",)),
}
#: The one room that may import the global reactor.
REACTOR_ROOM = "root"
REACTOR = "twisted.internet.reactor"

Table = dict[str, Room]


def _rooms_of(relative: str, table: Table) -> list[str]:
    """The rooms whose modules include the file at ``relative`` (a path from the root)."""
    return [
        name
        for name, room in table.items()
        if any(relative == m or (m.endswith("/") and relative.startswith(m)) for m in room.modules)
    ]


def _files(root: Path) -> list[str]:
    """Every module under stompbroker/ in the project at ``root``, as paths from ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "stompbroker").rglob("*.py"))


def _misplaced(root: Path, table: Table = ROOMS) -> list[str]:
    """The modules under stompbroker/ that are in no room or in more than one."""
    found = []
    for relative in _files(root):
        rooms = _rooms_of(relative, table)
        if len(rooms) != 1:
            found.append(f"{relative} in {rooms or 'no room'}")
    return found


def _module_name(relative: str) -> str:
    """The dotted name of the module at ``relative``: a package is named by its __init__."""
    parts = relative.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_path(name: str, root: Path) -> str | None:
    """The path from ``root`` of the project module ``name``, or None if there is none."""
    base = name.replace(".", "/")
    for relative in (f"{base}/__init__.py", f"{base}.py"):
        if (root / relative).is_file():
            return relative
    return None


def _imports(path: Path, package: str) -> list[tuple[str, str]]:
    """Each name ``path`` imports, with the part of it that must be a module.

    ``import a.b`` gives ("a.b", "a.b"); ``from a import b`` gives ("a.b", "a"), since ``b``
    may be a module or a name in ``a``. Relative imports are resolved against ``package``.
    Imports inside functions and ``if TYPE_CHECKING:`` count as well.
    """
    tree = ast.parse(path.read_text(), str(path))
    names: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((alias.name, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.extend((f"{module}.{alias.name}", module) for alias in node.names)
    return names


def _allowed_library(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``name`` is the standard library's or under one of ``prefixes``."""
    top = name.split(".")[0]
    if top == "__future__" or top in sys.stdlib_module_names:
        return True
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _private(part: str) -> bool:
    """Whether a module name's ``part`` marks a private module (``_x``, not ``__main__``)."""
    return part.startswith("_") and not part.startswith("__")


def _violations(root: Path, relative: str, table: Table = ROOMS) -> list[str]:
    """What the module at ``relative`` imports that its room may not, each with the reason."""
    (room,) = _rooms_of(relative, table)
    rule = table[room]
    module = _module_name(relative)
    package = module if relative.endswith("__init__.py") else module.rpartition(".")[0]
    found = []
    for name, must_be_module in _imports(root / relative, package):
        if name == REACTOR or name.startswith(REACTOR + "."):
            if room != REACTOR_ROOM:
                found.append(f"{name} (the global reactor)")
        elif name.split(".")[0] == "stompbroker":
            target = _module_path(name, root) or _module_path(must_be_module, root)
            if target is None:
                found.append(f"{name} (no such module)")
                continue
            owners = _rooms_of(target, table)
            target_room = owners[0] if len(owners) == 1 else "?"
            if target_room == room:
                continue
            if target_room not in rule.rooms:
                found.append(f"{name} (room {target_room})")
            elif any(_private(part) for part in _module_name(target).split(".")):
                found.append(f"{name} (private module of {target_room})")
        elif not _allowed_library(name, rule.libraries):
            found.append(f"{name} (library)")
    return found


MODULES = [*_files(ROOT), PLUGIN]


@pytest.mark.parametrize("relative", MODULES)
def test_room_imports_only_what_it_may(relative: str) -> None:
    """Each module imports only its own room, stdlib, and the rooms and libraries its row lists."""
    assert _violations(ROOT, relative) == []


def test_every_module_is_in_exactly_one_room() -> None:
    """Every .py file under stompbroker/ (packages' __init__ included) is in one room."""
    assert _misplaced(ROOT) == []


def test_every_path_the_table_names_exists() -> None:
    """The table names no module that is not there."""
    named = {m for room in ROOMS.values() for m in room.modules}
    assert {m for m in named if not (ROOT / m).exists()} == set()


def test_plugin_imports_no_project_module() -> None:
    """The twistd plugin file imports only twisted.application.service at import time."""
    assert _imports(ROOT / PLUGIN, "twisted.plugins") == [
        ("twisted.application.service.ServiceMaker", "twisted.application.service"),
    ]


def _doc_table(text: str) -> Table:
    """The room table of an ARCHITECTURE.md text: each cell's `backticked` words."""
    section = text.split("## Rooms and who may import whom", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    table = {}
    for row in rows:
        cells = [re.findall(r"`([^`]+)`", cell) for cell in row.strip("|").split("|")]
        (name,), modules, _holds, rooms, libraries = cells
        table[name] = Room(tuple(modules), tuple(rooms), tuple(libraries))
    return table


def test_doc_table_matches_this_table() -> None:
    """ARCHITECTURE.md's room table names the same rooms, modules and imports as ROOMS."""
    assert _doc_table(DOC.read_text()) == ROOMS


# The checker's own tests: each rule flags a probe that breaks it and passes a clean one.


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    """A project at ``tmp_path`` with the core's facade and a private module, plus ``files``."""
    every = {
        "stompbroker/__init__.py": "",
        "stompbroker/core/__init__.py": "from ._broker import Broker\n",
        "stompbroker/core/_broker.py": "class Broker: ...\n",
        **files,
    }
    for relative, text in every.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    return tmp_path


def test_checker_catches_a_module_in_no_room(tmp_path: Path) -> None:
    """A new top-level module, or a file two rooms claim, is reported; a roomed one is not."""
    root = _project(tmp_path, {"stompbroker/newthing.py": "", "stompbroker/tap.py": ""})
    assert _misplaced(root) == ["stompbroker/newthing.py in no room"]
    twice = {**ROOMS, "extra": Room(("stompbroker/tap.py",))}
    assert "stompbroker/tap.py in ['root', 'extra']" in _misplaced(root, twice)


def test_checker_catches_a_forbidden_room(tmp_path: Path) -> None:
    """A codec module importing the core or a missing project module is flagged."""
    root = _project(
        tmp_path,
        {
            "stompbroker/codec/probe.py": (
                "from stompbroker.core import Broker\nimport stompbroker.nothing\n"
            ),
            "stompbroker/codec/clean.py": "from . import _frame\nfrom ._frame import Frame\n",
            "stompbroker/codec/_frame.py": "class Frame: ...\n",
        },
    )
    assert _violations(root, "stompbroker/codec/probe.py") == [
        "stompbroker.core.Broker (room core)",
        "stompbroker.nothing (no such module)",
    ]
    assert _violations(root, "stompbroker/codec/clean.py") == []


def test_checker_catches_a_forbidden_library(tmp_path: Path) -> None:
    """A core module importing Twisted beyond defer/task/logger, or yaml, is flagged."""
    root = _project(
        tmp_path,
        {
            "stompbroker/core/probe.py": (
                "import yaml\nimport twisted.internet\n"
                "from twisted.internet import defer, protocol\n"
            ),
            "stompbroker/core/clean.py": (
                "from __future__ import annotations\nimport json\nimport zope.interface\n"
                "from twisted.internet.defer import Deferred\nfrom twisted.logger import Logger\n"
            ),
        },
    )
    assert _violations(root, "stompbroker/core/probe.py") == [
        "yaml (library)",
        "twisted.internet (library)",
        "twisted.internet.protocol (library)",
    ]
    assert _violations(root, "stompbroker/core/clean.py") == []


def test_checker_catches_the_global_reactor(tmp_path: Path) -> None:
    """The global reactor, imported either way and inside a function, is flagged out of root."""
    text = (
        "import twisted.internet.reactor\n"
        "def run():\n    from twisted.internet import reactor\n    reactor.run()\n"
    )
    root = _project(tmp_path, {"stompbroker/transport/probe.py": text, "stompbroker/tap.py": text})
    assert _violations(root, "stompbroker/transport/probe.py") == [
        "twisted.internet.reactor (the global reactor)",
        "twisted.internet.reactor (the global reactor)",
    ]
    assert _violations(root, "stompbroker/tap.py") == []


def test_checker_catches_another_rooms_private_module(tmp_path: Path) -> None:
    """A module importing another room's _x module is flagged; its own and a facade are not."""
    root = _project(
        tmp_path,
        {
            "stompbroker/session/probe.py": (
                "from stompbroker.core._broker import Broker\n"
                "from stompbroker.core import _broker\n"
            ),
            "stompbroker/session/clean.py": "from stompbroker.core import Broker\n",
            "stompbroker/core/clean.py": (
                "from stompbroker.core._broker import Broker\nfrom . import _broker\n"
            ),
        },
    )
    assert _violations(root, "stompbroker/session/probe.py") == [
        "stompbroker.core._broker.Broker (private module of core)",
        "stompbroker.core._broker (private module of core)",
    ]
    assert _violations(root, "stompbroker/session/clean.py") == []
    assert _violations(root, "stompbroker/core/clean.py") == []


def test_checker_catches_a_plugin_importing_the_project(tmp_path: Path) -> None:
    """A plugin file importing a project module breaks the plugin rule; the real one keeps it."""
    root = _project(
        tmp_path,
        {
            "stompbroker/tap.py": "",
            PLUGIN: "from twisted.application.service import ServiceMaker\n"
            "from stompbroker import tap\n",
        },
    )
    assert _violations(root, PLUGIN) == ["stompbroker.tap (room root)"]
    assert _imports(root / PLUGIN, "twisted.plugins") != _imports(ROOT / PLUGIN, "twisted.plugins")


def test_doc_checker_catches_a_drifted_row() -> None:
    """A doc row whose imports differ from the table is told apart; a faithful row is not."""
    head = (
        "## Rooms and who may import whom\n\n| room | modules | holds | rooms | libraries |\n"
        "|---|---|---|---|---|\n"
    )
    faithful = head + "| `codec` | `stompbroker/codec/` | frames, `Frame` | — | — |\n\n## Next\n"
    drifted = head + "| `codec` | `stompbroker/codec/` | frames | `core` | — |\n"
    assert _doc_table(faithful) == {"codec": ROOMS["codec"]}
    assert _doc_table(drifted) != {"codec": ROOMS["codec"]}
