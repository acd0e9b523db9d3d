"""Build hook: records the commit a wheel was built from, so that a wheel install knows its
``git_sha`` (read back by :func:`pgti_core.instruments.system.git_sha`). Metadata lives in
pyproject.toml."""

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHA_FILE = "pgti_core/GIT_SHA"
"""Written only into the build tree (never the checkout); absent in editable installs."""


class BuildPyWithSha(build_py):
    """``build_py`` that also writes ``git rev-parse HEAD`` of the source tree to :data:`SHA_FILE`."""

    def run(self) -> None:
        super().run()
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
            sha = out.stdout.strip() if out.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            sha = ""  # building from an sdist or without git: nothing to record
        if sha:
            target = Path(self.build_lib) / SHA_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(sha + "\n")


setup(cmdclass={"build_py": BuildPyWithSha})
