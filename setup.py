"""Build stompbroker, compiling the modules every message goes through with mypyc.

``pip install .`` compiles them (a C compiler and Python's headers are needed; mypy comes as a
build requirement). Where the compilation fails, the build goes on without them and the broker
runs as pure Python, saying so at start. ``STOMPBROKER_PURE=1`` skips the compilation (an
editable install for development must: a compiled module would hide later edits of its
source). docs/performance.md has the figures.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: The compiled modules: the codec, the session and the core, but for the modules that define
#: zope.interface interfaces or twisted.cred plug-ins (mypyc cannot compile them) and the
#: access control (tests replace its methods; no message goes through it).
NOT_COMPILED = {"_access.py", "_cred.py", "_store.py", "__init__.py"}
PACKAGES = ("stompbroker/codec", "stompbroker/session", "stompbroker/core")


def compiled_sources() -> list[str]:
    """The source files mypyc compiles, in a stable order."""
    here = os.path.dirname(os.path.abspath(__file__))
    sources = []
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(here, package))):
            if name.endswith(".py") and name not in NOT_COMPILED:
                sources.append(f"{package}/{name}")
    return sources


def extensions() -> list[Any]:
    """mypyc's extensions, each optional (a failed compilation leaves pure Python)."""
    if os.environ.get("STOMPBROKER_PURE") == "1":
        print("stompbroker: STOMPBROKER_PURE=1, building pure Python", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as e:
        print(f"stompbroker: no mypyc ({e}), building pure Python", file=sys.stderr)
        return []
    try:
        built = mypycify(compiled_sources(), opt_level="3")
    except (Exception, SystemExit) as e:  # mypy's errors exit: the pure build still works
        print(f"stompbroker: mypyc failed ({e!r}), building pure Python", file=sys.stderr)
        return []
    return built


class BuildOrFallBack(build_ext):
    """Build the compiled modules, or none: a failure removes what was built, and the
    installation goes on as pure Python (the broker says which it runs at start)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler, no headers: CompileError, PlatformError, ...
            print(f"stompbroker: compiling failed ({e}), building pure Python", file=sys.stderr)
            for extension in self.extensions:
                path = self.get_ext_fullpath(extension.name)  # in the tree when in place
                if os.path.exists(path):
                    os.remove(path)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildOrFallBack})
