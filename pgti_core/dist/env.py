"""Who this process is in a distributed run: rank, local rank, world and rendezvous address, read
from the launcher's environment (torchrun, SLURM srun, PBS with Cray PALS mpiexec, MPI), and the
device it trains on (``cuda:{local_rank}``, never the paper's hard-coded ``rank % 4``)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

import torch
import torch.distributed as dist

LAUNCHERS = ("torchrun", "slurm", "pbs", "mpi", "spawn", "single")
BACKENDS = ("nccl", "gloo")
DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500

# (rank, world size, local rank, local world size) variables of each MPI flavour, most specific
# first; each quantity lists its alternative names (Cray PMI, then MPICH/Intel MPI hydra).
_MPI_FIELDS = ("rank", "world_size", "local_rank", "local_world_size")
_MPI_FLAVOURS = (
    (("OMPI_COMM_WORLD_RANK",), ("OMPI_COMM_WORLD_SIZE",), ("OMPI_COMM_WORLD_LOCAL_RANK",),
     ("OMPI_COMM_WORLD_LOCAL_SIZE",)),
    (("MV2_COMM_WORLD_RANK",), ("MV2_COMM_WORLD_SIZE",), ("MV2_COMM_WORLD_LOCAL_RANK",),
     ("MV2_COMM_WORLD_LOCAL_SIZE",)),
    (("PMI_RANK",), ("PMI_SIZE",), ("PMI_LOCAL_RANK", "MPI_LOCALRANKID"),
     ("PMI_LOCAL_SIZE", "MPI_LOCALNRANKS")),
)  # fmt: skip


@dataclass(frozen=True)
class DistEnv:
    """One process's place in a distributed run.

    Args:
        rank (int, default 0): global rank, ``0 <= rank < world_size``.
        local_rank (int, default 0): rank among the processes of this node; picks the GPU.
        world_size (int, default 1): number of processes.
        local_world_size (int, default 1): processes on this node.
        node_rank (int, optional): index of this node, when the launcher says.
        num_nodes (int, optional): nodes of the run, when the launcher says.
        master_addr (str, default ``127.0.0.1``): host of rank 0's rendezvous store.
        master_port (int, default 29500): port of the rendezvous store.
        launcher (str, default ``single``): one of :data:`LAUNCHERS`.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int | None = None
    num_nodes: int | None = None
    master_addr: str = DEFAULT_MASTER_ADDR
    master_port: int = DEFAULT_MASTER_PORT
    launcher: str = "single"

    def __post_init__(self) -> None:
        _check({f.name: getattr(self, f.name) for f in fields(self)}, {})

    @classmethod
    def local(cls, rank: int, world_size: int, master_port: int) -> DistEnv:
        """Rank ``rank`` of ``world_size`` processes this program spawns on this host."""
        return cls(
            rank=rank,
            local_rank=rank,
            world_size=world_size,
            local_world_size=world_size,
            node_rank=0,
            num_nodes=1,
            master_port=master_port,
            launcher="spawn",
        )

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the rank that writes results)."""
        return self.rank == 0


def _check(values: Mapping[str, object], labels: Mapping[str, str]) -> None:
    """Raise ``ValueError`` naming the field (or the environment variable in ``labels``) that is
    not an integer, negative, or inconsistent with the others."""

    def name(field: str) -> str:
        return labels.get(field, field)

    for field in ("rank", "local_rank", "world_size", "local_world_size", "node_rank",
                  "num_nodes", "master_port"):  # fmt: skip
        v = values.get(field)
        if v is None and field in ("node_rank", "num_nodes"):
            continue
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{name(field)}: expected an integer, got {v!r}")
        if v < 0:
            raise ValueError(f"{name(field)}: expected >= 0, got {v}")
    for smaller, bound in (("rank", "world_size"), ("local_rank", "local_world_size"),
                           ("node_rank", "num_nodes")):  # fmt: skip
        lo, hi = values.get(smaller), values.get(bound)
        if hi is not None and hi < 1:
            raise ValueError(f"{name(bound)}: expected >= 1, got {hi}")
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"{name(smaller)}={lo} must be < {name(bound)}={hi}")
    if values["local_world_size"] > values["world_size"]:
        raise ValueError(
            f"{name('local_world_size')}={values['local_world_size']} exceeds "
            f"{name('world_size')}={values['world_size']}"
        )
    if not 0 < values["master_port"] < 65536:
        raise ValueError(
            f"{name('master_port')}: expected a port in 1..65535, got {values['master_port']}"
        )
    if not isinstance(values.get("master_addr"), str) or not values["master_addr"]:
        raise ValueError(
            f"{name('master_addr')}: expected a host name, got {values.get('master_addr')!r}"
        )
    if values.get("launcher") not in LAUNCHERS:
        raise ValueError(
            f"launcher: expected one of {', '.join(LAUNCHERS)}, got {values.get('launcher')!r}"
        )


class _Reader:
    """Reads one launcher's variables, remembering which variable gave each field (for errors)."""

    def __init__(self, environ: Mapping[str, str], launcher: str) -> None:
        self.environ, self.launcher = environ, launcher
        self.values: dict[str, object] = {}
        self.labels: dict[str, str] = {}

    def raw(self, *names: str) -> tuple[str, str] | None:
        """``(value, name)`` of the first non-empty variable among ``names``."""
        for name in names:
            value = self.environ.get(name, "").strip()
            if value:
                return value, name
        return None

    def read_int(self, field: str, *names: str, required: bool = True) -> int | None:
        """Parse the first set variable among ``names`` into ``field``."""
        found = self.raw(*names)
        if found is None:
            if required:
                raise ValueError(f"{names[0]}: not set, but the {self.launcher} variables are")
            return None
        text, name = found
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name}: expected an integer, got {text!r}") from None
        self.set(field, value, name)
        return value

    def set(self, field: str, value: int, label: str) -> None:
        """Record ``field`` derived from variable ``label``."""
        self.values[field], self.labels[field] = value, label

    def build(self, master_addr: str | None = None) -> DistEnv:
        """Check the fields read and make the :class:`DistEnv`; ``MASTER_ADDR``/``MASTER_PORT`` win
        over ``master_addr`` derived from the launcher."""
        addr = self.raw("MASTER_ADDR")
        self.values["master_addr"] = addr[0] if addr else master_addr or DEFAULT_MASTER_ADDR
        if self.read_int("master_port", "MASTER_PORT", required=False) is None:
            self.values["master_port"] = DEFAULT_MASTER_PORT
        self.values["launcher"] = self.launcher
        _check(self.values, self.labels)
        return DistEnv(**self.values)


def iter_hosts(nodelist: str) -> Iterator[str]:
    """Host names of a SLURM compressed node list, in order, lazily (what ``scontrol show
    hostnames`` prints): ``nid[001-002,007]`` -> ``nid001``, ``nid002``, ``nid007``.

    Args:
        nodelist (str): e.g. ``gpu-a[01,03]-x,cpu[1-2]`` (brackets may repeat within a name).
    """
    for expr in _split_top(nodelist):
        parts = re.split(r"(\[[^\[\]]*\])", expr)
        if any(c in p for p in parts[::2] for c in "[]"):
            raise ValueError(f"bad nodelist {nodelist!r}: unbalanced or nested brackets")
        yield from _expand_parts(parts, nodelist)


def _expand_parts(parts: list[str], nodelist: str) -> Iterator[str]:
    """Every host of one name made of literal and ``[...]`` parts (a lazy cartesian product)."""
    if not parts:
        yield ""
        return
    head = parts[0]
    for prefix in _expand_bracket(head[1:-1], nodelist) if head.startswith("[") else (head,):
        for rest in _expand_parts(parts[1:], nodelist):
            yield prefix + rest


def first_host(nodelist: str) -> str:
    """The first host of a SLURM compressed node list (where rank 0 runs)."""
    host = next(iter_hosts(nodelist), "")
    if not host:
        raise ValueError(f"bad nodelist {nodelist!r}: no host")
    return host


def _split_top(nodelist: str) -> list[str]:
    """Split at the commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(nodelist):
        depth += (c == "[") - (c == "]")
        if depth not in (0, 1):
            raise ValueError(f"bad nodelist {nodelist!r}: unbalanced or nested brackets")
        if c == "," and depth == 0:
            items.append(nodelist[start:i])
            start = i + 1
    return [s.strip() for s in [*items, nodelist[start:]] if s.strip()]


def _expand_bracket(body: str, nodelist: str) -> Iterator[str]:
    """``001-003,7`` -> ``001 002 003 7`` (zero padding kept from the lower bound)."""
    for item in body.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", item)
        if m is None or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ValueError(f"bad nodelist {nodelist!r}: bad range {item!r}")
        lo, hi = m[1], m[2] or m[1]
        yield from (str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1))


def _tasks_per_node(spec: str) -> list[int]:
    """SLURM's ``2(x3),1`` -> ``[2, 2, 2, 1]``."""
    counts = []
    for item in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", item)
        if m is None:
            raise ValueError(f"expected counts like '4(x2),3', got {spec!r}")
        counts += [int(m[1])] * int(m[2] or 1)
    return counts


def _nodefile_hosts(reader: _Reader) -> list[str] | None:
    """Distinct hosts of ``$PBS_NODEFILE`` in order (first = rank 0's), ``None`` if unset."""
    found = reader.raw("PBS_NODEFILE")
    if found is None:
        return None
    try:
        with open(found[0]) as f:
            hosts = list(dict.fromkeys(line.strip() for line in f if line.strip()))
    except OSError as e:
        raise ValueError(f"PBS_NODEFILE: cannot read {found[0]!r}: {e.strerror}") from None
    if not hosts:
        raise ValueError(f"PBS_NODEFILE: {found[0]!r} lists no host")
    return hosts


def _torchrun(environ: Mapping[str, str]) -> DistEnv:
    r = _Reader(environ, "torchrun")
    r.read_int("rank", "RANK")
    r.read_int("world_size", "WORLD_SIZE")
    r.read_int("local_rank", "LOCAL_RANK")
    r.read_int("local_world_size", "LOCAL_WORLD_SIZE")
    r.read_int("node_rank", "GROUP_RANK", required=False)
    r.read_int("num_nodes", "GROUP_WORLD_SIZE", required=False)
    return r.build()


def _slurm(environ: Mapping[str, str]) -> DistEnv:
    """An ``srun`` task: the step's variables first, then the job's."""
    r = _Reader(environ, "slurm")
    r.read_int("rank", "SLURM_PROCID")
    r.read_int("world_size", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS")
    r.read_int("local_rank", "SLURM_LOCALID")
    node = r.read_int("node_rank", "SLURM_NODEID", required=False)
    r.read_int(
        "num_nodes", "SLURM_STEP_NUM_NODES", "SLURM_NNODES", "SLURM_JOB_NUM_NODES", required=False
    )
    found = r.raw("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")  # per node: "4(x2),3"
    if found is None:
        r.read_int("local_world_size", "SLURM_NTASKS_PER_NODE")  # the same on every node
    else:
        try:
            counts = _tasks_per_node(found[0])
        except ValueError as e:
            raise ValueError(f"{found[1]}: {e}") from None
        if len(counts) > 1 and node is None:
            raise ValueError(
                f"SLURM_NODEID: not set, but {found[1]}={found[0]} lists several nodes"
            )
        if (node or 0) >= len(counts):
            raise ValueError(f"SLURM_NODEID={node} has no entry in {found[1]}={found[0]}")
        r.set("local_world_size", counts[node or 0], found[1])
    nodelist = r.raw("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    master = None
    if nodelist is not None:
        try:
            master = first_host(nodelist[0])
        except ValueError as e:
            raise ValueError(f"{nodelist[1]}: {e}") from None
    return r.build(master)


def _pals(environ: Mapping[str, str]) -> DistEnv:
    """A rank of Cray PALS ``mpiexec`` in a PBS job (ALCF Polaris, Aurora)."""
    r = _Reader(environ, "pbs")
    r.read_int("rank", "PALS_RANKID")
    r.read_int("local_rank", "PALS_LOCAL_RANKID")
    world = r.read_int("world_size", "PMI_SIZE", "PALS_SIZE")
    r.read_int("node_rank", "PALS_NODEID", required=False)
    hosts = _nodefile_hosts(r)
    if hosts is not None:
        r.set("num_nodes", len(hosts), "PBS_NODEFILE")
    local = r.read_int("local_world_size", "PALS_LOCAL_SIZE", "PMI_LOCAL_SIZE", required=False)
    if local is None:
        if hosts is None or world % len(hosts):
            raise ValueError("PALS_LOCAL_SIZE: not set and not derivable from PBS_NODEFILE")
        r.set("local_world_size", world // len(hosts), "PBS_NODEFILE")
    return r.build(hosts[0] if hosts else None)


def _mpi(environ: Mapping[str, str]) -> DistEnv:
    """A rank of ``mpirun``/``mpiexec`` (Open MPI, MVAPICH2, MPICH, Intel MPI, Cray PMI)."""
    r = _Reader(environ, "mpi")
    flavour = next(f for f in _MPI_FLAVOURS if r.raw(*f[0]) and r.raw(*f[1]))
    for field, names in zip(_MPI_FIELDS, flavour, strict=True):
        r.read_int(field, *names)
    hosts = _nodefile_hosts(r)
    return r.build(hosts[0] if hosts else None)


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read this process's :class:`DistEnv` from the first launcher whose variables are set:
    torchrun (``RANK``), SLURM (``SLURM_PROCID``), PBS/PALS (``PALS_RANKID``), then MPI; a
    process with none of them is a single process. ``MASTER_ADDR``/``MASTER_PORT`` override the
    derived rendezvous (first host of the node list or ``$PBS_NODEFILE``; 127.0.0.1:29500).

    Args:
        environ (Mapping[str, str], optional): the variables to read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ

    def has(*names: str) -> bool:
        return all(env.get(n, "").strip() for n in names)

    if has("RANK") or has("WORLD_SIZE"):
        return _torchrun(env)
    if has("SLURM_PROCID"):
        return _slurm(env)
    if has("PALS_RANKID"):
        return _pals(env)
    if any(has(f[0][0], f[1][0]) for f in _MPI_FLAVOURS):
        return _mpi(env)
    return DistEnv()


def resolve_backend(backend: str | None = None) -> str:
    """The collective backend: ``nccl`` when CUDA is available, else ``gloo``; checks a requested
    one. Raises ``ValueError`` for an unknown backend or ``nccl`` without CUDA/NCCL.

    Args:
        backend (str, optional): ``nccl`` or ``gloo`` (default: chosen as above).
    """
    nccl = torch.cuda.is_available() and dist.is_available() and dist.is_nccl_available()
    if backend is None:
        return "nccl" if nccl else "gloo"
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "nccl" and not nccl:
        raise ValueError("backend nccl needs CUDA; use --backend gloo")
    return backend


def device_for(env: DistEnv, backend: str, cuda: bool | None = None) -> torch.device:
    """The device this rank trains on: ``cuda:{local_rank}`` when on CUDA, else ``cpu``.

    A launcher that binds one GPU per rank (``CUDA_VISIBLE_DEVICES`` naming a single device, as
    ALCF's Polaris affinity script does) leaves each rank ``cuda:0``.

    Args:
        env (DistEnv): this process's place in the run.
        backend (str): ``nccl`` (always CUDA) or ``gloo``.
        cuda (bool, optional): train on CUDA (default: whenever CUDA is available).
    """
    backend = resolve_backend(backend)
    if cuda is None:
        cuda = torch.cuda.is_available()
    if not cuda:
        if backend == "nccl":
            raise ValueError("cuda: backend nccl needs CUDA tensors; use --backend gloo on the CPU")
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError("cuda: CUDA was requested but no CUDA device is available")
    if env.local_rank < count:
        return torch.device("cuda", env.local_rank)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if count == 1 and visible.strip() and "," not in visible:
        return torch.device("cuda", 0)
    raise ValueError(
        f"local_rank: {env.local_rank} has no CUDA device ({count} visible); "
        f"run at most {count} ranks per node"
    )
