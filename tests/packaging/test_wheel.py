"""Issue 13: `pip install .` (not editable) gives a working `roomserver serve` from any
folder, with the pages, the SDK, the Lua scripts and the word-filter table inside.

The wheel is built from this checkout without network (`--no-build-isolation`: the
test venv's setuptools) and installed without its dependencies into a fresh venv
whose only other import path is the test venv's site-packages (added by a .pth
line, which does not run that venv's editable-install hooks): so every module and
file the server loads must come from the wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
NOT_SOURCE = (
    ".git",
    ".venv",
    "build",
    "*.egg-info",
    "node_modules",
    "__pycache__",
    ".*_cache",
    "dist",
    "docs",
    "tests",
)


def test_every_package_directory_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.relative_to(ROOT).parts)
        for top in ("roomserver", "loadtest")
        for p in [ROOT / top, *(ROOT / top).rglob("*")]
        if p.is_dir() and (p / "__init__.py").exists()
    }
    web = {
        "roomserver.web_client",
        "roomserver.web_client.app",
        "roomserver.web_client.sdk",
        "roomserver.web_client.vendor",
        # each vendored library's folder (web_client/vendor/<name>/, docs/third-party.md)
        *(
            f"roomserver.web_client.vendor.{d.name}"
            for d in (ROOT / "web_client" / "vendor").iterdir()
            if d.is_dir()
        ),
    }
    assert listed == found | web


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read()


def test_wheel_installs_and_serves_from_any_folder(tmp_path: Path):
    # Built from a copy: a build leaves build/ and *.egg-info in the tree it builds.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheels = tmp_path / "wheels"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROOMSERVER_", "PYTHON"))}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=True, capture_output=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    (wheel,) = wheels.glob("roomserver-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=300, env=env,
    )  # fmt: skip
    site = subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "deps-from-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # The data files, loaded as the server loads them, from the installed package.
    check = (
        "import roomserver, roomserver.web as w, roomserver.bus.redis as r, roomserver.core.textkey as t;"
        "print(roomserver.__file__); print(w.WEB_DIR); print(len(r._lua('commit')) > 0)"
    )
    out = subprocess.run(
        [venv / "bin" / "python", "-c", check],
        check=True,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    ).stdout.split()
    assert out[0].startswith(site) and out[1] == f"{site}/roomserver/web_client" and out[2] == "True", out
    subprocess.run(
        [venv / "bin" / "python", "-c", "from roomserver.core.textkey import match_key; print(match_key('ＡＢ'))"],
        check=True, capture_output=True, cwd=elsewhere, env=env,
    )  # fmt: skip

    port = free_port()
    proc = subprocess.Popen(
        [venv / "bin" / "roomserver", "serve", "--port", str(port)],
        cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else proc.returncode
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the installed server did not answer /healthz"
            time.sleep(0.1)
        status, page = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"<html" in page.lower()
        scripts = re.findall(rb'src="/?([^"]+\.js)"', page)
        assert scripts, page[:500]
        for script in scripts:
            assert _get(f"http://127.0.0.1:{port}/{script.decode()}")[0] == 200
        status, sdk = _get(f"http://127.0.0.1:{port}/sdk/roomserver.js")
        assert status == 200 and b"RoomClient" in sdk
        # The analytics store's schema came from the wheel's migrations (a server
        # without them refuses to start); its file is under the working directory.
        assert (elsewhere / "roomserver-data" / "analytics.sqlite3").is_file()
    finally:
        proc.terminate()
        proc.wait(15)
