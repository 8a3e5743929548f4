"""docs/settings.md and config/settings.py name the same keys, with the same defaults.

Modelled on datasette's documented-settings test: a setting added in code without a line in the
docs (or a documented one that no longer exists) fails here, not in an operator's hands.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from config.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "settings.md"
ROW = re.compile(r"^\| `(?P<key>[a-z_]+\.[a-z_0-9]+)` \| (?P<default>[^|]*) \|", re.MULTILINE)


def code_keys() -> dict[str, Any]:
    """Every `section.key` of Settings with its default value."""
    keys: dict[str, Any] = {}
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        for key in dataclasses.fields(get_type_hints(Settings)[section.name]):
            keys[f"{section.name}.{key.name}"] = getattr(getattr(defaults, section.name), key.name)
    return keys


def documented() -> dict[str, str]:
    return {m["key"]: m["default"].strip() for m in ROW.finditer(DOCS.read_text())}


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    in_code, in_docs = set(code_keys()), set(documented())
    assert in_code - in_docs == set(), "settings missing from docs/settings.md"
    assert in_docs - in_code == set(), "docs/settings.md documents settings that do not exist"


@pytest.mark.parametrize("key", sorted(code_keys()))
def test_documented_default_is_the_real_default(key: str) -> None:
    default, written = code_keys()[key], documented()[key]
    if key == "clinics.dir":
        assert written == "`config/clinics`" and Path(default) == ROOT / "config" / "clinics"
    elif default in ("", None):
        assert written == "empty"
    elif isinstance(default, bool):  # as TOML and the environment spell it
        assert written.strip("`") == str(default).lower()
    elif isinstance(default, float):
        assert float(written.strip("`")) == default
    else:
        assert written.strip("`") == str(default)


def test_environment_names_in_the_docs_are_real_settings() -> None:
    """A CALLSERVER_X_Y an operator copies from the README or docs must do something."""
    real = {f"{ENV_PREFIX}{key.replace('.', '_').upper()}" for key in code_keys()}
    real |= {"CALLSERVER_CONFIG"}
    texts = [ROOT / "README.md", DOCS, ROOT / "config" / "callserver.toml"]
    texts += sorted((ROOT / "docs").glob("*.md"))
    named = {
        name
        for path in texts
        for name in re.findall(r"\bCALLSERVER_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    assert named - real == set()
