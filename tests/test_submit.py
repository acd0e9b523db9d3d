"""SLURM/PBS job scripts: node counts, launch lines, shell syntax, and what they really launch."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from bench.jobs import submit

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash not installed")


def _make(tmp_path, scheduler, gpus=(1, 4, 8, 16), **kwargs):
    kwargs.setdefault("workdir", tmp_path)
    return submit.make_scripts(
        scheduler, list(gpus), 4, "pems-bay", "index,standard", tmp_path / "jobs", **kwargs
    )


def _world(path):
    return int(path.stem.removeprefix("pgti-p"))


def test_slurm_scripts(tmp_path):
    scripts = _make(tmp_path, "slurm", account="proj", queue="gpu", walltime="02:30:00")
    assert [_world(p) for p in scripts] == [1, 4, 8, 16]
    for path, nodes, per_node in zip(scripts, (1, 1, 2, 4), (1, 4, 4, 4), strict=True):
        text = path.read_text()
        p = _world(path)
        assert text.startswith("#!/bin/bash\n")
        assert f"#SBATCH --nodes={nodes}\n" in text
        assert f"#SBATCH --gpus-per-node={per_node}\n" in text
        assert "#SBATCH --time=02:30:00\n" in text
        assert "#SBATCH --account=proj\n" in text and "#SBATCH --partition=gpu\n" in text
        assert "set -euo pipefail" in text
        assert "srun --ntasks-per-node=1" in text and "-m torch.distributed.run" in text
        assert f"--nproc-per-node={per_node} " in text and "--rdzv-backend=c10d" in text
        assert (
            f"-m bench.run --gpus {p} --ranks-per-node {per_node} --datasets pems-bay "
            "--strategies index,standard"
        ) in text
        assert os.access(path, os.X_OK)
    submit_all = (tmp_path / "jobs" / submit.SUBMIT_ALL).read_text()
    assert [ln.split()[1] for ln in submit_all.splitlines() if ln.startswith("sbatch")] == [
        p.name for p in scripts
    ]


def test_pbs_scripts(tmp_path):
    scripts = _make(tmp_path, "pbs", gpus=(2, 8, 128), account="proj", queue="prod")
    for path, nodes, per_node in zip(scripts, (1, 2, 32), (2, 4, 4), strict=True):
        text = path.read_text()
        p = _world(path)
        assert (
            f"#PBS -l select={nodes}:ncpus={8 * per_node}:mpiprocs={per_node}:ngpus={per_node}\n"
            in text
        )
        assert "#PBS -l walltime=01:00:00\n" in text
        assert "#PBS -A proj\n" in text and "#PBS -q prod\n" in text
        assert 'MASTER_ADDR=$(head -n 1 "$PBS_NODEFILE")' in text
        assert f"mpiexec -n {p} --ppn {per_node} --depth=8" in text
        assert f"-m bench.run --gpus {p} --ranks-per-node {per_node} " in text
    submit_all = (tmp_path / "jobs" / submit.SUBMIT_ALL).read_text()
    assert sum(ln.startswith("qsub ") for ln in submit_all.splitlines()) == 3


def test_no_account_or_queue_lines_unless_given(tmp_path):
    for scheduler in submit.SCHEDULERS:
        text = _make(tmp_path, scheduler, gpus=(8,))[0].read_text()
        assert "--account" not in text and "--partition" not in text
        assert "#PBS -A" not in text and "#PBS -q" not in text


@needs_bash
@pytest.mark.parametrize("scheduler", sorted(submit.SCHEDULERS))
def test_generated_scripts_parse(tmp_path, scheduler):
    scripts = _make(tmp_path, scheduler, setup=["module load conda"], run_args=["--tag", "a b"])
    for path in [*scripts, tmp_path / "jobs" / submit.SUBMIT_ALL]:
        result = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def _stub(bin_dir, name, body):
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


@needs_bash
def test_slurm_script_launches_torchrun_on_the_first_node(tmp_path):
    """Run the script with stand-ins for scontrol and srun: check the command it really runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.txt"
    _stub(bin_dir, "scontrol", "printf 'gpu07\\ngpu08\\n'")
    _stub(bin_dir, "srun", f'printf "%s\\n" "$@" > {shlex.quote(str(log))}')
    script = _make(tmp_path, "slurm", gpus=(8,), run_args=["--out", "my results.csv"])[0]
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_NNODES="2",
               SLURM_JOB_NODELIST="gpu[07-08]", SLURM_JOB_ID="42")  # fmt: skip
    subprocess.run([BASH, str(script)], env=env, check=True, cwd=tmp_path)
    argv = log.read_text().splitlines()
    assert argv[:3] == ["--ntasks-per-node=1", "--cpus-per-task=32", "python"]
    assert "--nnodes=2" in argv and "--rdzv-id=42" in argv
    assert "--rdzv-endpoint=gpu07:29500" in argv
    tail = argv[argv.index("-m", argv.index("torch.distributed.run")) :]
    assert tail == ["-m", "bench.run", "--gpus", "8", "--ranks-per-node", "4",
                    "--datasets", "pems-bay", "--strategies", "index,standard",
                    "--out", "my results.csv"]  # fmt: skip


@needs_bash
def test_pbs_script_sets_master_from_the_nodefile(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.txt"
    _stub(
        bin_dir, "mpiexec",
        f'{{ echo "$MASTER_ADDR:$MASTER_PORT:$OMP_NUM_THREADS"; printf "%s\\n" "$@"; }} > {shlex.quote(str(log))}',
    )  # fmt: skip
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("x3005c0s7b0n0\nx3005c0s7b1n0\n")
    script = _make(tmp_path, "pbs", gpus=(8,), python="/opt/env/bin/python", cpus_per_rank=16)[0]
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PBS_NODEFILE=str(nodefile))
    subprocess.run([BASH, str(script)], env=env, check=True, cwd=tmp_path)
    first, *argv = log.read_text().splitlines()
    assert first == "x3005c0s7b0n0:29500:16"
    assert argv[:4] == ["-n", "8", "--ppn", "4"]
    assert argv[argv.index("/opt/env/bin/python") + 1 :][:4] == ["-m", "bench.run", "--gpus", "8"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gpus": [6]}, "gpus"),  # 6 ranks do not fill whole nodes of 4
        ({"gpus": []}, "gpus"),
        ({"gpus": [4, 4]}, "gpus"),
        ({"gpus": [0]}, "gpus"),
        ({"scheduler": "lsf"}, "scheduler"),
        ({"walltime": "1h"}, "walltime"),
        ({"account": "my proj"}, "account"),
        ({"datasets": " "}, "datasets"),
        ({"directives": ["-l a\n-l b"]}, "directives"),
    ],
)
def test_make_scripts_rejects_bad_input(tmp_path, kwargs, field):
    args = {"scheduler": "slurm", "gpus": [4, 8], "ranks_per_node": 4, "datasets": "pems-bay",
            "strategies": "index", "out_dir": tmp_path / "jobs", **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=field):
        submit.make_scripts(**args)
    assert not (tmp_path / "jobs").exists()


def test_cli_writes_scripts_and_passes_arguments_through(tmp_path, capsys):
    out = tmp_path / "jobs"
    argv = ["--scheduler", "pbs", "--gpus", "4,8", "--out-dir", str(out), "--workdir",
            str(tmp_path), "--directive=-l filesystems=home:eagle", "--", "--epochs", "3"]  # fmt: skip
    assert submit.main(argv) == 0
    text = (out / "pgti-p8.sh").read_text()
    assert "#PBS -l filesystems=home:eagle\n" in text
    assert text.rstrip().endswith("--strategies index,standard --epochs 3")
    assert submit.SUBMIT_ALL in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--scheduler", "lsf"],
        ["--gpus", "4"],  # no scheduler
        ["--scheduler", "slurm", "--gpus", "4,x"],
        ["--scheduler", "slurm", "--gpus", "4,6"],
        ["--scheduler", "pbs", "--walltime", "90"],
    ],
)
def test_cli_usage_errors_exit_2(tmp_path, argv):
    with pytest.raises(SystemExit) as exc:
        submit.main([*argv, "--out-dir", str(tmp_path / "jobs"), "--workdir", str(tmp_path)])
    assert exc.value.code == 2
    assert not (tmp_path / "jobs").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--strategies", "indx"],
        ["--datasets", "no-such-profile"],
        ["--", "--epochs", "0"],
        ["--workdir", "/nonexistent/pgti"],
    ],
)
def test_cli_checks_the_bench_run_arguments_before_writing(tmp_path, argv, capsys):
    own = ["--scheduler", "slurm", "--gpus", "8", "--out-dir", str(tmp_path / "jobs")]
    if "--workdir" not in argv:
        own += ["--workdir", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        submit.main([*own, *argv])
    assert exc.value.code == 2
    assert not (tmp_path / "jobs").exists()
    # --no-check skips bench.run's parser (for a login node without the environment).
    if argv[0] == "--strategies":
        assert submit.main([*own, "--no-check", *argv]) == 0
        assert (tmp_path / "jobs" / "pgti-p8.sh").is_file()
