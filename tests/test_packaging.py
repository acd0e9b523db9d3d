"""A wheel of the project records its version and the commit it was built from, and asks only
for the runtime dependencies (PyTorch Geometric and asv are extras)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _head() -> str | None:
    if shutil.which("git") is None:
        return None
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of HEAD, built from a clone (the checkout's own tree stays untouched)."""
    if _head() is None:
        pytest.skip("not a git checkout")
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(["git", "clone", "-q", "--shared", str(ROOT), str(tmp / "src")], check=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "dist"), str(tmp / "src")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("pgti-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_records_version_and_git_sha(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (meta,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(z.read(meta).decode())
        sha = z.read("pgti_core/GIT_SHA").decode().strip()
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert metadata["Version"] == version.group(1)
    assert sha == _head()
    requires = metadata.get_all("Requires-Dist")
    runtime = [r for r in requires if "extra ==" not in r]
    assert not [r for r in runtime if r.startswith(("torch-geometric", "torch_geometric", "asv"))]
    assert any(r.startswith("torch-geometric") and 'extra == "peers"' in r for r in requires)
    assert not [n for n in names if n.startswith("benchmarks/")]  # the asv suite is not shipped
