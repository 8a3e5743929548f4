"""The package structure docs/architecture.md describes, checked on the source.

Dependencies run one way: config <- storage <- callbacks <- {callserver, staff_ui}; the flows
(ivr_flows) and speech (transcription) stand alone and are used by callserver only. Exactly one
module imports pyVoIP, and only the server's composition root assembles the staff UI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "config",
    "storage",
    "callbacks",
    "ivr_flows",
    "transcription",
    "staff_ui",
    "callserver",
)
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "storage": {"config"},
    "callbacks": {"config", "storage"},
    "ivr_flows": set(),
    "transcription": set(),
    "staff_ui": {"config", "storage", "callbacks"},
    "callserver": {"config", "storage", "callbacks", "ivr_flows", "transcription", "staff_ui"},
}
PYVOIP_MODULE = "callserver/sip/pyvoip_compat.py"
COMPOSITION_ROOT = "callserver/server.py"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sources(package)
        for module in imports_of(path)
        if (top := module.split(".")[0]) in PACKAGES
        and top != package
        and top not in ALLOWED[package]
    }
    assert wrong == set()


def test_exactly_one_module_imports_pyvoip() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in sources(package)
        if any(module.split(".")[0] == "pyVoIP" for module in imports_of(path))
    }
    assert importers == {PYVOIP_MODULE}


def test_only_the_composition_root_assembles_the_staff_ui() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in sources("callserver")
        if any(module.split(".")[0] == "staff_ui" for module in imports_of(path))
    }
    assert importers == {COMPOSITION_ROOT}
