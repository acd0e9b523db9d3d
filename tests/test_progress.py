"""Progress bars are off under --quiet (inherited by child processes) and when stderr is no terminal."""

from __future__ import annotations

import io
import subprocess
import sys

from pgti_core.progress import QUIET_ENV, is_quiet, progress, set_quiet


def test_quiet_is_inherited_and_silences_bars(monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    assert not is_quiet()
    set_quiet()
    try:
        assert progress(range(3)).disable
        child = subprocess.run([sys.executable, "-c", "from pgti_core.progress import is_quiet; "
                                "print(is_quiet())"], capture_output=True, text=True, check=True)  # fmt: skip
        assert child.stdout.strip() == "True"
    finally:
        set_quiet(False)
    assert not is_quiet()


def test_bar_shows_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress(range(3), file=io.StringIO()).disable  # not a terminal
    out = Tty()
    bar = progress(range(3), file=out, desc="build")
    assert not bar.disable
    list(bar)
    assert "build" in out.getvalue()
    assert progress(range(3), file=Tty(), quiet=True).disable
