"""The JavaScript packages in the repository agree with the server and with their docs:
the SDK packages carry the server's version and licence and ship the files they name, and
docs/third-party.md lists every JS tool at the version the lock file installs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = [REPO / "web_client" / "sdk", REPO / "sdk-node"]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return data


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: p.name)
def test_sdk_package_matches_the_server_and_ships_its_files(folder: Path) -> None:
    pkg = read_json(folder / "package.json")
    assert pkg["version"] == project()["version"]
    assert pkg["license"] == project()["license"]
    assert pkg["type"] == "module"
    entry = pkg["exports"]["."]
    for name in (pkg["main"], pkg["types"], entry["import"], entry["types"], *pkg["files"]):
        assert (folder / name).is_file(), name
    assert "dependencies" not in pkg  # no runtime dependencies, by design


def test_third_party_doc_lists_every_js_tool_at_its_locked_version() -> None:
    tools = read_json(REPO / "tools" / "js" / "package.json")["devDependencies"]
    lock = read_json(REPO / "tools" / "js" / "package-lock.json")["packages"]
    doc = (REPO / "docs" / "third-party.md").read_text(encoding="utf-8")
    for name in tools:
        entry = lock[f"node_modules/{name}"]
        row = f"| `{name}` | {entry['version']} | {entry['license']} |"
        assert row in doc, f"docs/third-party.md lacks {row}"
