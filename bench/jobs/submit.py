"""Write SLURM or PBS job scripts that run the sweep's cluster points (one script per world size).

Each script allocates ``ceil(P / ranks_per_node)`` nodes and starts P ranks of ``bench.run``:
under SLURM one ``torchrun`` per node through ``srun`` (c10d rendezvous on the first node), under
PBS one process per rank through Cray PALS ``mpiexec`` as on ALCF Polaris (ranks read ``PMI_*``;
``MASTER_ADDR`` is the first host of ``$PBS_NODEFILE``). One script holds every dataset and
strategy of its world size, so each allocation size is queued once. ``submit_all.sh`` beside
them submits them all. Jobs run in ``workdir``, so results land in the sweep's results CSV.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cli import int_list

SCHEDULERS = {"slurm": "sbatch", "pbs": "qsub"}
SUBMIT_ALL = "submit_all.sh"
_WALLTIME = re.compile(r"\d+:[0-5]\d:[0-5]\d")


def nodes_for(world_size: int, ranks_per_node: int) -> int:
    """Nodes holding ``world_size`` ranks at ``ranks_per_node`` each (full nodes beyond one)."""
    if world_size < 1 or ranks_per_node < 1:
        raise ValueError(f"gpus: world sizes and ranks per node must be >= 1, got {world_size}")
    if world_size > ranks_per_node and world_size % ranks_per_node:
        raise ValueError(
            f"gpus: {world_size} is not a multiple of ranks_per_node={ranks_per_node}; "
            "use whole nodes beyond one"
        )
    return math.ceil(world_size / ranks_per_node)


def make_scripts(
    scheduler: str,
    gpus: Sequence[int],
    ranks_per_node: int,
    datasets: str,
    strategies: str,
    out_dir: str | os.PathLike,
    *,
    account: str | None = None,
    queue: str | None = None,
    walltime: str = "01:00:00",
    python: str = "python",
    cpus_per_rank: int = 8,
    port: int = 29500,
    workdir: str | os.PathLike = ".",
    pbs_chunk: str | None = None,
    directives: Sequence[str] = (),
    setup: Sequence[str] = (),
    run_args: Sequence[str] = (),
) -> list[Path]:
    """Write one job script per world size in ``gpus`` and ``submit_all.sh``; return the scripts.

    Args:
        scheduler (str): ``"slurm"`` or ``"pbs"``.
        gpus (Sequence[int]): world sizes P (one GPU per rank).
        ranks_per_node (int): ranks (GPUs) per node.
        datasets (str): ``bench.run --datasets`` value, passed as given.
        strategies (str): ``bench.run --strategies`` value, passed as given.
        out_dir (path): folder for the scripts and the jobs' logs (created).
        account (str, optional): allocation to charge (``--account`` / ``-A``).
        queue (str, optional): partition or queue (``--partition`` / ``-q``).
        walltime (str, default ``01:00:00``): ``H:MM:SS`` limit per job.
        python (str, default ``python``): interpreter on the compute nodes.
        cpus_per_rank (int, default 8): cores per rank (``OMP_NUM_THREADS``, PBS ``--depth``).
        port (int, default 29500): rendezvous port on the first node.
        workdir (path, default ``.``): where jobs run, so results land in the sweep's CSV.
        pbs_chunk (str, optional): PBS ``select`` chunk resources; default
            ``ncpus=<per node x cpus per rank>:mpiprocs=<per node>:ngpus=<per node>``
            (Polaris: ``system=polaris``).
        directives (Sequence[str]): extra header options, e.g. ``-l filesystems=home:eagle``.
        setup (Sequence[str]): shell lines run before the launch (``module load ...``).
        run_args (Sequence[str]): further ``bench.run`` arguments, passed as given.
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler: must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    if not gpus or len(set(gpus)) != len(gpus):
        raise ValueError(f"gpus: need distinct world sizes, got {list(gpus)}")
    if ranks_per_node < 1 or cpus_per_rank < 1:
        raise ValueError(
            f"ranks_per_node/cpus_per_rank: must be >= 1, got {ranks_per_node}/{cpus_per_rank}"
        )
    if not _WALLTIME.fullmatch(walltime):
        raise ValueError(f"walltime: expected H:MM:SS, got {walltime!r}")
    if not 0 < port < 65536:
        raise ValueError(f"port: expected 1..65535, got {port}")
    for name, value in (("datasets", datasets), ("strategies", strategies), ("python", python)):
        if not value or not value.strip():
            raise ValueError(f"{name}: must not be empty")
    for name, value in (("account", account), ("queue", queue), ("pbs_chunk", pbs_chunk)):
        if value is not None and (not value or re.search(r"\s", value)):
            raise ValueError(f"{name}: must be one word, got {value!r}")
    for line in (*directives, *setup):
        if "\n" in line:
            raise ValueError(f"directives/setup: one line each, got {line!r}")
    nodes = {p: nodes_for(p, ranks_per_node) for p in gpus}
    workdir = _workdir(workdir)

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    job = _JobText(
        scheduler=scheduler, rpn=ranks_per_node, out=out, account=account, queue=queue,
        walltime=walltime, python=python, cpus=cpus_per_rank, port=port,
        workdir=workdir, pbs_chunk=pbs_chunk, directives=tuple(directives),
        setup=tuple(setup),
        run_args=("--datasets", datasets, "--strategies", strategies, *run_args),
    )  # fmt: skip
    scripts = []
    for p in gpus:
        path = out / f"pgti-p{p}.sh"
        _write_executable(path, job.script(p, nodes[p]))
        scripts.append(path)
    submit = [
        "#!/bin/bash",
        "# Submit every job script of this sweep (written by python -m bench.submit).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        *(f"{SCHEDULERS[scheduler]} {shlex.quote(s.name)}" for s in scripts),
    ]
    _write_executable(out / SUBMIT_ALL, "\n".join(submit) + "\n")
    return scripts


@dataclass(frozen=True)
class _JobText:
    """The text of one scheduler's job scripts; everything but the world size is fixed."""

    scheduler: str
    rpn: int
    out: Path
    account: str | None
    queue: str | None
    walltime: str
    python: str
    cpus: int
    port: int
    workdir: Path
    pbs_chunk: str | None
    directives: tuple[str, ...]
    setup: tuple[str, ...]
    run_args: tuple[str, ...]

    def script(self, world: int, nodes: int) -> str:
        per_node = min(world, self.rpn)
        header = self._slurm_header if self.scheduler == "slurm" else self._pbs_header
        launch = self._slurm_launch if self.scheduler == "slurm" else self._pbs_launch
        lines = [
            "#!/bin/bash",
            *header(world, nodes, per_node),
            f"# pgti sweep, world size {world} = {nodes} node(s) x {per_node} rank(s), "
            "written by python -m bench.submit",
            "set -euo pipefail",
            f"cd {shlex.quote(str(self.workdir))}",
            *(
                ["set +u  # module/conda scripts read unset variables", *self.setup, "set -u"]
                if self.setup
                else []
            ),
            f"export OMP_NUM_THREADS={self.cpus}",
            *launch(world, nodes, per_node),
        ]
        return "\n".join(lines) + "\n"

    def _bench_run(self, world: int, per_node: int) -> str:
        args = ["--gpus", str(world), "--ranks-per-node", str(per_node), *self.run_args]
        return shlex.join(["-m", "bench.run", *args])

    def _slurm_header(self, world: int, nodes: int, per_node: int) -> list[str]:
        opts = [
            f"--job-name=pgti-p{world}",
            f"--nodes={nodes}",
            "--ntasks-per-node=1",
            f"--gpus-per-node={per_node}",
            f"--cpus-per-task={per_node * self.cpus}",
            f"--time={self.walltime}",
            *([f"--account={self.account}"] if self.account else []),
            *([f"--partition={self.queue}"] if self.queue else []),
            f"--output={self.out / f'pgti-p{world}-%j.out'}",
            *self.directives,
        ]
        return [f"#SBATCH {o}" for o in opts]

    def _slurm_launch(self, world: int, nodes: int, per_node: int) -> list[str]:
        return [
            'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            f"srun --ntasks-per-node=1 --cpus-per-task={per_node * self.cpus}"
            f" {shlex.quote(self.python)} -m torch.distributed.run"
            f' --nnodes="$SLURM_NNODES" --nproc-per-node={per_node}'
            f' --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d'
            f' --rdzv-endpoint="$head_node:{self.port}" \\',
            f"    {self._bench_run(world, per_node)}",
        ]

    def _pbs_header(self, world: int, nodes: int, per_node: int) -> list[str]:
        # ncpus and mpiprocs too: generic PBS Pro otherwise gives each chunk one CPU and one MPI rank
        chunk = (
            self.pbs_chunk or f"ncpus={per_node * self.cpus}:mpiprocs={per_node}:ngpus={per_node}"
        )
        opts = [
            f"-N pgti-p{world}",
            f"-l select={nodes}:{chunk}",
            "-l place=scatter",
            f"-l walltime={self.walltime}",
            *([f"-A {self.account}"] if self.account else []),
            *([f"-q {self.queue}"] if self.queue else []),
            "-j oe",
            f"-o {self.out / f'pgti-p{world}.log'}",
            *self.directives,
        ]
        return [f"#PBS {o}" for o in opts]

    def _pbs_launch(self, world: int, nodes: int, per_node: int) -> list[str]:
        return [
            'MASTER_ADDR=$(head -n 1 "$PBS_NODEFILE")',
            "export MASTER_ADDR",
            f"export MASTER_PORT={self.port}",
            f"mpiexec -n {world} --ppn {per_node} --depth={self.cpus} --cpu-bind depth"
            f" --env OMP_NUM_THREADS={self.cpus} {shlex.quote(self.python)} \\",
            f"    {self._bench_run(world, per_node)}",
        ]


def _workdir(path: str | os.PathLike) -> Path:
    workdir = Path(path).resolve()
    if not workdir.is_dir():
        raise ValueError(f"workdir: {path} is not a directory (the jobs cd into it)")
    return workdir


def _write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _check_run_args(args: argparse.Namespace, run_args: list[str]) -> None:
    """Parse the jobs' ``bench.run`` arguments here (from ``--workdir``, as the jobs will), so a
    typo exits 2 now instead of after the queue wait."""
    from bench.sweep.args import parse_args

    here = Path.cwd()
    os.chdir(_workdir(args.workdir))
    try:
        parse_args(
            ["--gpus", str(args.gpus[0]), "--ranks-per-node", str(args.ranks_per_node),
             "--datasets", args.datasets, "--strategies", args.strategies, *run_args, "--dry-run"]
        )  # fmt: skip
    finally:
        os.chdir(here)


def main(argv: list[str] | None = None) -> int:
    """Command line; arguments after ``--`` go to ``bench.run`` unchanged."""
    argv = sys.argv[1:] if argv is None else list(argv)
    run_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.submit",
        description="Write SLURM/PBS job scripts (one per world size) for the sweep's cluster "
        "points; arguments after -- are passed to bench.run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scheduler", required=True, choices=tuple(SCHEDULERS))
    parser.add_argument("--gpus", type=int_list, default="4,8,16,32,64,128", help="world sizes")
    parser.add_argument("--ranks-per-node", type=int, default=4, help="GPUs (ranks) per node")
    parser.add_argument("--datasets", default="pems-bay", help="passed to bench.run")
    parser.add_argument("--strategies", default="index,standard", help="passed to bench.run")
    parser.add_argument("--out-dir", default="jobs", help="folder for scripts and job logs")
    parser.add_argument("--account", default=None, help="allocation to charge")
    parser.add_argument("--queue", default=None, help="queue (PBS) or partition (SLURM)")
    parser.add_argument("--walltime", default="01:00:00", help="H:MM:SS per job")
    parser.add_argument("--python", default="python", help="interpreter on the compute nodes")
    parser.add_argument("--cpus-per-rank", type=int, default=8, help="cores per rank")
    parser.add_argument("--port", type=int, default=29500, help="rendezvous port")
    parser.add_argument("--workdir", default=".", help="where the jobs run (the sweep's root)")
    parser.add_argument(
        "--pbs-chunk",
        default=None,
        help="PBS select chunk; default ncpus=<ranks per node x cpus per rank>:mpiprocs=<ranks per node>:ngpus=<ranks per node>",
    )
    parser.add_argument(
        "--directive",
        action="append",
        default=[],
        help="extra header option, repeatable; write --directive=-l... or --directive=--x=y",
    )
    parser.add_argument(
        "--setup", action="append", default=[], help="shell line before the launch (repeatable)"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip checking the bench.run arguments here"
    )
    args = parser.parse_args(own)
    try:
        if not args.no_check:
            _check_run_args(args, run_args)
        scripts = make_scripts(
            args.scheduler, args.gpus, args.ranks_per_node, args.datasets, args.strategies,
            args.out_dir, account=args.account, queue=args.queue, walltime=args.walltime,
            python=args.python, cpus_per_rank=args.cpus_per_rank, port=args.port,
            workdir=args.workdir, pbs_chunk=args.pbs_chunk, directives=args.directive,
            setup=args.setup, run_args=run_args,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    for path in scripts:
        print(path)
    print(f"submit all with: bash {scripts[0].parent / SUBMIT_ALL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
