"""Times users can trust: honest measured points, pinned ranks, noise flags, repeats to a target."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.sweep import driver
from bench.sweep.launch import rank_cpus
from bench.sweep.noise import NOISY_FRAC, foreign_frac
from bench.sweep.plan import cpu_rank_cap, plan_points, with_validation
from bench.sweep.repeats import RepeatRule, annotate, ci95, repeat_groups, run_repeats, t975
from bench.sweep.results import read_results
from pgti_core.data.datasets import parse_dataset_spec

TINY = "metr-la:nodes=12,steps=1200"


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PGTI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _plan(worlds, cap, repeats=1):
    return plan_points(
        [parse_dataset_spec(TINY)],
        ["index"],
        ["dcrnn-paper"],
        worlds,
        repeats=repeats,
        epochs=1,
        batch_size=None,
        seed=0,
        max_steps=3,
        ranks_per_node=4,
        max_local_ranks=cap,
        gpus_here=0,
    )


def test_rank_cap_is_the_cores_unless_oversubscribing():
    assert cpu_rank_cap(64, cores=2, threads_per_rank=1, oversubscribe=False) == 2
    assert cpu_rank_cap(64, cores=8, threads_per_rank=2, oversubscribe=False) == 4
    assert cpu_rank_cap(3, cores=8, threads_per_rank=1, oversubscribe=False) == 3  # memory binds
    assert cpu_rank_cap(64, cores=2, threads_per_rank=4, oversubscribe=False) == 1
    assert cpu_rank_cap(64, cores=2, threads_per_rank=1, oversubscribe=True) == 64


def test_validation_emulates_the_largest_measured_world():
    points = with_validation(_plan([1, 8, 128], cap=2), local_cap=2)
    modes = {(p.world_size, p.mode, p.validation) for p in points}
    assert (2, "measured", False) in modes  # the measured side of the check is added
    assert (2, "emulated", True) in modes
    assert (8, "emulated", False) in modes and (8, "measured", False) not in modes
    keys = [p.key for p in points]
    assert len(keys) == len(set(keys))
    val = next(p for p in points if p.validation)
    assert val.local_ranks == 2 and val.ranks_per_node == 4
    # nothing to check when nothing is emulated, or when only one rank fits
    assert with_validation(_plan([1, 2], cap=2), local_cap=2) == _plan([1, 2], cap=2)
    assert with_validation(_plan([1, 4], cap=1), local_cap=1) == _plan([1, 4], cap=1)


def test_oversubscribed_plan_is_emulated_unless_asked(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    argv = ["--gpus", "1,4", "--datasets", TINY, "--out", str(tmp_path / "r.csv"), "--dry-run"]
    assert driver.main(argv) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("metr")]
    p4 = [r for r in rows if r[3] == "4"]
    assert p4 and all(r[4] == "emulated" for r in p4)
    assert driver.main([*argv, "--oversubscribe"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("metr")]
    p4 = [r for r in rows if r[3] == "4"]
    assert p4 and all(r[4] == "measured" for r in p4)


def test_student_t_interval():
    assert t975(1) == pytest.approx(12.706) and t975(30) == pytest.approx(2.042)
    assert t975(31) < t975(30) and t975(10**6) == pytest.approx(1.96, abs=1e-3)
    assert ci95([1.0]) is None
    # two values 1 and 3: sd = sqrt(2), half-width = 12.706 * sqrt(2) / sqrt(2)
    assert ci95([1.0, 3.0]) == pytest.approx(12.706)


class FakeTimer:
    """Epoch times from a list instead of real runs: one call per repeat run."""

    def __init__(self, times):
        self.times, self.calls = list(times), []

    def __call__(self, point, values):
        self.calls.append((point.repeat, list(values)))
        return self.times[len(self.calls) - 1]


def test_repeats_auto_stop_when_the_interval_is_reached():
    rule = RepeatRule(cap=10, target=0.05)
    group = repeat_groups(_plan([1], cap=2, repeats=10))[0]
    assert [p.repeat for p in group] == list(range(10))
    # +-1.24 s after 3, +-0.65 after 4, +-0.44 after 5: the target (+-0.6 s) is met at 5
    timer = FakeTimer([12.0, 12.5, 11.5, 12.0, 12.0, 12.0, 12.0, 12.0, 12.0, 12.0])
    assert run_repeats(group, rule, {}, timer) == "target"
    n = len(timer.calls)
    values = timer.times[:n]
    assert ci95(values) <= 0.05 * sum(values) / n
    assert ci95(values[:-1]) > 0.05 * sum(values[:-1]) / (n - 1)  # not one repeat earlier
    assert n == 5


def test_repeats_auto_stop_at_the_cap_and_reuse_finished_repeats():
    rule = RepeatRule(cap=4, target=0.05)
    group = repeat_groups(_plan([1], cap=2, repeats=4))[0]
    noisy = FakeTimer([1.0, 2.0, 3.0, 4.0])
    assert run_repeats(group, rule, {}, noisy) == "cap" and len(noisy.calls) == 4
    # on resume the repeats already in the CSV count, only the rest run
    resumed = FakeTimer([5.0, 5.0])
    prev = {group[0].key: 5.0, group[1].key: 5.0}
    assert run_repeats(group, rule, prev, resumed) == "target"
    assert [r for r, _ in resumed.calls] == [2] and resumed.calls[0][1] == [5.0, 5.0]
    # --repeats N runs exactly N whatever the interval
    fixed = FakeTimer([5.0] * 4)
    assert run_repeats(group, RepeatRule(cap=4), {}, fixed) == "cap" and len(fixed.calls) == 4


def test_rows_carry_the_interval():
    rule = RepeatRule(cap=5, target=0.05)
    row = {"status": "ok", "epoch_s_mean": 10.0}
    annotate(row, [10.0, 10.0], rule)
    assert row["epoch_s_ci95"] == 0.0 and row["repeats_stop"] == "target"
    row = {"status": "ok", "epoch_s_mean": 20.0}
    annotate(row, [10.0], rule)
    assert row["epoch_s_ci95"] == pytest.approx(12.706 * 5.0) and row["repeats_stop"] == ""


def test_foreign_share_arithmetic():
    # 10 s on 2 cores: 14 s busy, 4 s of them ours -> 10 s foreign of 20 s capacity
    assert foreign_frac(14.0, 4.0, 10.0, 2) == pytest.approx(0.5)
    assert foreign_frac(3.0, 4.0, 10.0, 2) == 0.0  # clock granularity never goes negative
    assert foreign_frac(50.0, 0.0, 10.0, 2) == 1.0


def test_ranks_get_their_own_cores():
    assert [rank_cpus(r, 1, [0, 1, 2, 3]) for r in range(4)] == [[0], [1], [2], [3]]
    assert [rank_cpus(r, 2, [4, 5, 6, 7]) for r in range(2)] == [[4, 5], [6, 7]]
    assert rank_cpus(2, 1, [0, 1]) == [0]  # oversubscribed: wraps round
    assert rank_cpus(0, 4, [0, 1]) == [0, 1]


def test_worker_pins_itself():
    cpu = min(os.sched_getaffinity(0))
    code = "from bench.sweep.worker import pin_to_cores; import torch; print(pin_to_cores(), torch.get_num_threads())"
    env = dict(os.environ, PGTI_RANK_CPUS=str(cpu))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"[{cpu}]", "1"]


@pytest.mark.slow
def test_point_run_next_to_a_busy_core_is_flagged_noisy(tmp_path):
    out = tmp_path / "r.csv"
    cpu = max(os.sched_getaffinity(0))
    busy = subprocess.Popen(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"]
    )
    try:
        argv = ["--gpus", "1", "--strategies", "index", "--datasets", TINY, "--max-steps", "20"]
        assert driver.main([*argv, "--quiet", "--out", str(out)]) == 0
    finally:
        busy.kill()
        busy.wait()
    row = read_results(out).iloc[0]
    assert row.status == "ok"
    # one of the usable cores was kept busy the whole time by a process not of the point
    share = 1 / len(os.sched_getaffinity(0))
    assert row.host_foreign_cpu_frac >= 0.6 * share > NOISY_FRAC
    assert row.noisy and "noisy" in row.notes


def test_straggler_wait_pairs_steps_of_the_real_ranks():
    from bench.perf.project import CommModel, project_epoch
    from bench.sweep.rows import straggler_wait_s

    # each rank is slow on a different step: synchronized, every step lasts 3 s, not 2 on average
    assert straggler_wait_s([{"step_s": [1.0, 3.0]}, {"step_s": [3.0, 1.0]}]) == 1.0
    assert straggler_wait_s([{"step_s": [1.0, 3.0]}]) == 0.0  # one rank waits for nobody
    assert straggler_wait_s([{"step_s": [2.0, 2.0]}, {"step_s": [1.0, 1.0]}]) == 0.0
    out = project_epoch(10, 0.1, 0.2, 0.0, 0, 1, CommModel(0.0, 1e9, "given"), wait_s_per_step=0.5)
    assert out["wait_s"] == pytest.approx(5.0) and out["epoch_s"] == pytest.approx(8.0)


def _rows(tmp_path):
    from bench.sweep.results import append_row

    base = {"status": "ok", "strategy": "index", "model": "dcrnn-paper", "dataset": "tiny",
            "nodes": 50, "steps": 2000, "features": 2, "lags": 12, "horizon": 12, "epochs": 1,
            "batch_per_rank": 64, "steps_per_rank": 10, "device": "cpu"}  # fmt: skip
    rows = [
        dict(base, point_key="a", world_size=1, mode="measured", epoch_s_mean=10.0, noisy=True,
             host_peak_pss_max_rank=400, total_s=11.0),
        dict(base, point_key="b", world_size=2, mode="measured", epoch_s_mean=5.0,
             host_peak_pss_max_rank=400, total_s=6.0),
        dict(base, point_key="c", world_size=4, mode="measured", epoch_s_mean=4.0,
             host_peak_pss_max_rank=400, total_s=5.0, oversubscribed=True),
        dict(base, point_key="d", world_size=2, mode="emulated", epoch_s_mean=5.5, validation=True,
             host_peak_pss_max_rank=420, total_s=6.5),
        dict(base, point_key="e", world_size=8, mode="emulated", epoch_s_mean=1.5,
             host_peak_pss_max_rank=400, total_s=2.0),
    ]  # fmt: skip
    path = tmp_path / "r.csv"
    for r in rows:
        append_row(path, r)
    return read_results(path)


def test_summary_checks_the_projection_and_marks_flagged_points(tmp_path):
    from bench.perf.validate import projection_checks, projection_errors
    from bench.report.summary import aggregate, summary_markdown

    df = _rows(tmp_path)
    agg = aggregate(df)
    # the validation emulation is not a point of the curves
    assert sorted(zip(agg.world_size, agg["mode"], strict=True)) == [
        (1, "measured"), (2, "measured"), (4, "measured"), (8, "emulated")
    ]  # fmt: skip
    flags = agg.set_index("world_size")
    assert flags.loc[4, "oversubscribed_any"] and not flags.loc[2, "oversubscribed_any"]
    assert flags.loc[1, "n_noisy"] == 1 and flags.loc[2, "n_noisy"] == 0
    checks = projection_checks(df)
    assert len(checks) == 1
    assert checks.projection_err_epoch_frac.iloc[0] == pytest.approx(0.1)
    assert checks.projection_err_pss_frac.iloc[0] == pytest.approx(0.05)
    err = projection_errors(df[df.validation].iloc[0].to_dict(), df)
    assert err["projection_err_epoch_frac"] == pytest.approx(0.1)
    text = summary_markdown(df)
    assert "Projection check" in text and "+10.0%" in text and "+5.0%" in text
    assert "1 noisy" in text


def test_oversubscribed_points_are_drawn_apart(tmp_path):
    from bench.report.axes import OVERSUBSCRIBED
    from bench.report.charts import scaling_figure
    from bench.report.summary import aggregate, with_speedups

    agg = with_speedups(aggregate(_rows(tmp_path)), "epoch_s_mean")
    fig = scaling_figure(agg, "t", {"index": ("#1f77b4", "o")}, "epoch_s_mean")
    ax = fig.axes[0]
    grey = [ln for ln in ax.lines if ln.get_color() == OVERSUBSCRIBED]
    assert grey and all(ln.get_linestyle() == "None" for ln in grey)
    assert all(4 not in ln.get_xdata() for ln in ax.lines if ln.get_linestyle() == "-")
    labels = [t.get_text() for t in fig.legends[0].get_texts()] if fig.legends else []
    labels += [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()]
    assert any("oversubscribed" in t for t in labels) and any("noisy" in t for t in labels)


def test_sweep_with_repeats_auto_stops_at_the_target(tmp_path, monkeypatch):
    from bench.sweep.rows import identity

    times = iter([12.0, 12.5, 11.5, 12.0, 12.0, 12.0, 12.0, 12.0])

    def fake_run_one(point, ds, run, predicted, budget, args, comm):  # a fake timer, no processes
        return dict(identity(point, run, "ok"), epoch_s_mean=(t := next(times)), total_s=t)

    monkeypatch.setattr(driver, "run_one", fake_run_one)
    out = tmp_path / "r.csv"
    argv = ["--gpus", "1", "--strategies", "index", "--datasets", TINY, "--repeats", "auto",
            "--max-repeats", "8", "--quiet", "--no-plots", "--out", str(out)]  # fmt: skip
    assert driver.main(argv) == 0
    df = read_results(out)
    assert list(df.repeat) == [0, 1, 2, 3, 4]  # +-0.44 s after 5 repeats is within 5% of 12 s
    assert list(df.repeats_stop) == ["", "", "", "", "target"]
    assert df.epoch_s_ci95.iloc[-1] == pytest.approx(ci95([12.0, 12.5, 11.5, 12.0, 12.0]))
    assert driver.main(argv) == 0 and len(read_results(out)) == 5  # resume: nothing more to run
