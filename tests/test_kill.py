"""Kill tests: a sweep killed (SIGKILL, SIGTERM) while a point runs leaves no rank alive, no
temporary directory after the next run, and a re-run completes every point exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.sweep import faults
from bench.sweep.results import read_results

TINY = "metr-la:nodes=12,steps=1200"
SWEEP = [
    "--datasets", TINY, "--strategies", "index", "--gpus", "1", "--epochs", "1",
    "--max-steps", "2", "--quiet", "--timeout", "600",
]  # fmt: skip


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, PGTI_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(tmpdir))
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path), **extra)
    env.pop("PGTI_FAULT", None)
    return env


def _sweep(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.run", *SWEEP, "--out", str(tmp_path / "r.csv"), *args]
    return subprocess.Popen(cmd, env=_env(tmp_path, **env), stderr=subprocess.PIPE, text=True)


def _ranks(sweep: psutil.Process) -> list[psutil.Process]:
    """The sweep's rank processes (``python -m bench.sweep.worker``, not the baseline probe)."""
    found = []
    for p in sweep.children(recursive=True):
        try:
            if "bench.sweep.worker" in p.cmdline()[1:3]:
                found.append(p)
        except psutil.Error:  # exited meanwhile
            continue
    return found


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_sweep_leaves_no_rank_and_resumes_every_point_once(tmp_path, sig):
    # one point finished before the kill, as in a sweep stopped part way
    done = _sweep(tmp_path, "--repeats", "1")
    assert done.wait(timeout=300) == 0, done.stderr.read()
    # the next point's rank hangs (PGTI_FAULT=hang): only the kill can end it
    sweep = _sweep(tmp_path, "--repeats", "3", PGTI_FAULT="hang")
    ranks = _wait_for(lambda: _ranks(psutil.Process(sweep.pid)), 120, "a rank to start")
    started = ranks[0].create_time()
    _wait_for(lambda: time.time() - started >= 2.0, 30, "2 s into the point")  # as in the issue
    assert all(_alive(r) for r in ranks)
    sweep.send_signal(sig)
    code = sweep.wait(timeout=60)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + signal.SIGTERM)
    if sig == signal.SIGTERM:
        assert "interrupted" in sweep.stderr.read()
    _wait_for(lambda: not any(_alive(r) for r in ranks), 10, "the ranks to die")
    # the re-run cleans what a SIGKILL left in the temp dir and runs the remaining points once
    again = _sweep(tmp_path, "--repeats", "3")
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert list((tmp_path / "tmp").glob(f"{faults.TEMP_PREFIX}*")) == []
    df = read_results(tmp_path / "r.csv")
    assert sorted(df.repeat) == [0, 1, 2] and (df.status == "ok").all()
    assert df.point_key.is_unique


def test_stale_tempdirs_of_dead_owners_are_removed(tmp_path):
    with faults.owned_tempdir() as mine:
        pass
    dead = tmp_path / f"{faults.TEMP_PREFIX}dead"
    dead.mkdir()
    (dead / "owner").write_text("999999999 1.0")  # no such process
    reused = tmp_path / f"{faults.TEMP_PREFIX}reused"
    reused.mkdir()
    (reused / "owner").write_text(f"{os.getpid()} 1.0")  # our pid, another start time
    live = tmp_path / f"{faults.TEMP_PREFIX}live"
    live.mkdir()
    with faults.owned_tempdir() as current:
        (live / "owner").write_text((current / "owner").read_text())
        assert sorted(faults.clean_stale_tempdirs(tmp_path)) == sorted([dead, reused])
    assert live.exists() and not mine.exists()


def test_oom_kills_reads_the_counter_file(tmp_path, monkeypatch):
    counter = tmp_path / "memory.events"
    counter.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 7\n")
    monkeypatch.setenv(faults.OOM_COUNTER_VAR, str(counter))
    assert faults.oom_kills() == 7
    monkeypatch.delenv(faults.OOM_COUNTER_VAR)
    found = faults.oom_kills()  # this host's own counter (cgroup v1/v2 or /proc/vmstat)
    assert found is None or found >= 0


def test_a_rank_dies_when_its_parent_is_killed(tmp_path):
    """PR_SET_PDEATHSIG through ``die_with_parent``: the grandchild dies with its parent."""
    code = (
        "import subprocess, sys, time\n"
        "from bench.sweep.faults import die_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
        " preexec_fn=die_with_parent, start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    _kill_parent_then_wait_for_child(tmp_path, code, "the child to die with its parent")


def test_the_parent_watch_kills_an_orphaned_rank(tmp_path):
    """The fallback where prctl is unavailable: a rank whose parent is gone kills itself."""
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import time; from bench.sweep.faults import watch_parent; watch_parent(0.1); "
        "time.sleep(600)'], env=dict(os.environ, PGTI_PARENT_PID=str(os.getpid())),"
        " start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    _kill_parent_then_wait_for_child(tmp_path, code, "the orphan to kill itself")


def _kill_parent_then_wait_for_child(tmp_path, code: str, what: str) -> None:
    """Run ``code`` (it prints its child's pid), SIGKILL it, and wait 10 s for the child to go."""
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env(tmp_path)
    )
    child = psutil.Process(int(parent.stdout.readline()))
    assert _alive(child)
    parent.kill()
    parent.wait()
    _wait_for(lambda: not _alive(child), 10, what)
