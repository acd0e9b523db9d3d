"""Launcher environment detection, node list expansion and device mapping (fake environments)."""

from __future__ import annotations

import pytest
import torch

from pgti_core.dist import DistEnv, detect_env, device_for, first_host, iter_hosts, resolve_backend

TORCHRUN = {
    "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4",
    "GROUP_RANK": "1", "GROUP_WORLD_SIZE": "2", "MASTER_ADDR": "node0", "MASTER_PORT": "1234",
}  # fmt: skip
SLURM = {
    "SLURM_PROCID": "6", "SLURM_LOCALID": "2", "SLURM_NTASKS": "8", "SLURM_NODEID": "1",
    "SLURM_NNODES": "2", "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_JOB_NODELIST": "nid[001-004,007]",
}  # fmt: skip
PALS = {
    "PALS_RANKID": "3", "PALS_LOCAL_RANKID": "3", "PALS_NODEID": "0", "PMI_RANK": "3",
    "PMI_SIZE": "8", "PMI_LOCAL_RANK": "3", "PMI_LOCAL_SIZE": "4",
}  # fmt: skip
OMPI = {
    "OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4",
    "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
}  # fmt: skip


def test_no_launcher_is_a_single_process():
    assert detect_env({}) == DistEnv()
    env = detect_env({"MASTER_ADDR": "h", "PATH": "/bin"})
    assert (env.launcher, env.world_size, env.master_addr, env.master_port) == (
        "single", 1, "127.0.0.1", 29500,
    )  # fmt: skip


def test_torchrun():
    env = detect_env(TORCHRUN)
    assert env == DistEnv(5, 1, 8, 4, 1, 2, "node0", 1234, "torchrun")
    assert not env.is_main


def test_torchrun_wins_over_slurm_and_mpi():
    env = detect_env({**SLURM, **OMPI, **TORCHRUN})
    assert (env.launcher, env.rank) == ("torchrun", 5)


def test_slurm_uses_nodelist_and_tasks_per_node():
    env = detect_env(SLURM)
    assert env == DistEnv(6, 2, 8, 4, 1, 2, "nid001", 29500, "slurm")


def test_slurm_uneven_nodes_step_variables_and_master_override():
    environ = {
        **SLURM, "SLURM_NTASKS": "99", "SLURM_STEP_NUM_TASKS": "7", "SLURM_PROCID": "6",
        "SLURM_NODEID": "2", "SLURM_LOCALID": "0", "SLURM_NNODES": "3",
        "SLURM_STEP_TASKS_PER_NODE": "3(x2),1", "SLURM_STEP_NODELIST": "gpu-a[01,03]-x,gpu-b7",
    }  # fmt: skip
    env = detect_env(environ)
    assert (env.world_size, env.local_world_size, env.master_addr) == (7, 1, "gpu-a01-x")
    env = detect_env({**environ, "MASTER_ADDR": "login1", "MASTER_PORT": "4000"})
    assert (env.master_addr, env.master_port) == ("login1", 4000)


def test_slurm_ntasks_per_node_and_no_nodelist():
    environ = {
        k: v for k, v in SLURM.items() if k not in ("SLURM_TASKS_PER_NODE", "SLURM_JOB_NODELIST")
    }
    env = detect_env({**environ, "SLURM_NTASKS_PER_NODE": "4", "SLURM_NODELIST": "c5"})
    assert (env.local_world_size, env.master_addr) == (4, "c5")
    env = detect_env({**environ, "SLURM_NTASKS_PER_NODE": "4"})
    assert env.master_addr == "127.0.0.1"


def test_pals_reads_master_and_nodes_from_pbs_nodefile(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("x3006c0s13b0n0.hsn\nx3006c0s13b0n0.hsn\nx3006c0s19b1n0.hsn\n\n")
    env = detect_env({**PALS, **OMPI, "PBS_NODEFILE": str(nodefile)})
    assert env == DistEnv(3, 3, 8, 4, 0, 2, "x3006c0s13b0n0.hsn", 29500, "pbs")
    no_local = {k: v for k, v in PALS.items() if k != "PMI_LOCAL_SIZE"}
    assert detect_env({**no_local, "PBS_NODEFILE": str(nodefile)}).local_world_size == 4
    with pytest.raises(ValueError, match="PALS_LOCAL_SIZE"):
        detect_env(no_local)


@pytest.mark.parametrize(
    "environ, expected",
    [
        (OMPI, (2, 0, 4, 2)),
        ({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}, (1, 1, 2, 2)),
        ({"MV2_COMM_WORLD_RANK": "3", "MV2_COMM_WORLD_SIZE": "4", "MV2_COMM_WORLD_LOCAL_RANK": "1",
          "MV2_COMM_WORLD_LOCAL_SIZE": "2"}, (3, 1, 4, 2)),
    ],
)  # fmt: skip
def test_mpi_flavours(environ, expected):
    env = detect_env(environ)
    assert env.launcher == "mpi"
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == expected


def test_mpi_master_from_pbs_nodefile(tmp_path):
    (tmp_path / "nodes").write_text("hostA\nhostB\n")
    assert detect_env({**OMPI, "PBS_NODEFILE": str(tmp_path / "nodes")}).master_addr == "hostA"


@pytest.mark.parametrize(
    "environ, variable",
    [
        ({**TORCHRUN, "RANK": "8"}, "RANK"),
        ({**TORCHRUN, "RANK": "-1"}, "RANK"),
        ({**TORCHRUN, "LOCAL_RANK": "two"}, "LOCAL_RANK"),
        ({**TORCHRUN, "LOCAL_WORLD_SIZE": "16"}, "LOCAL_WORLD_SIZE"),
        ({**TORCHRUN, "WORLD_SIZE": "0"}, "WORLD_SIZE"),
        ({**TORCHRUN, "MASTER_PORT": "70000"}, "MASTER_PORT"),
        ({k: v for k, v in TORCHRUN.items() if k != "LOCAL_RANK"}, "LOCAL_RANK"),
        ({"WORLD_SIZE": "2"}, "RANK"),
        ({**SLURM, "SLURM_PROCID": "8"}, "SLURM_PROCID"),
        ({**SLURM, "SLURM_LOCALID": "4"}, "SLURM_LOCALID"),
        ({**SLURM, "SLURM_NODEID": "2"}, "SLURM_NODEID"),
        ({**SLURM, "SLURM_TASKS_PER_NODE": "4x2"}, "SLURM_TASKS_PER_NODE"),
        ({k: v for k, v in SLURM.items() if k != "SLURM_TASKS_PER_NODE"}, "SLURM_NTASKS_PER_NODE"),
        ({k: v for k, v in SLURM.items() if k != "SLURM_NODEID"}, "SLURM_NODEID"),
        ({**SLURM, "SLURM_JOB_NODELIST": "nid[001-"}, "SLURM_JOB_NODELIST"),
        ({**SLURM, "SLURM_JOB_NODELIST": "nid[4-2]"}, "SLURM_JOB_NODELIST"),
        ({**PALS, "PALS_RANKID": "9"}, "PALS_RANKID"),
        ({**PALS, "PBS_NODEFILE": "/nonexistent/nodefile"}, "PBS_NODEFILE"),
        ({**OMPI, "OMPI_COMM_WORLD_LOCAL_RANK": "2"}, "OMPI_COMM_WORLD_LOCAL_RANK"),
    ],
)
def test_inconsistent_environment_names_the_variable(environ, variable):
    with pytest.raises(ValueError, match=rf"^{variable}\b"):
        detect_env(environ)


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("nid[001-004,007]", ["nid001", "nid002", "nid003", "nid004", "nid007"]),
        ("gpu-a[01,03]-x", ["gpu-a01-x", "gpu-a03-x"]),
        ("node7", ["node7"]),
        ("a1,b[2-3],c", ["a1", "b2", "b3", "c"]),
        ("r[1-2]n[08-09]", ["r1n08", "r1n09", "r2n08", "r2n09"]),
        ("x[9-11]", ["x9", "x10", "x11"]),
    ],
)
def test_nodelist_expansion(nodelist, hosts):
    assert list(iter_hosts(nodelist)) == hosts
    assert first_host(nodelist) == hosts[0]


def test_first_host_is_lazy_on_huge_ranges():
    assert first_host("n[0000000-9999999]") == "n0000000"


@pytest.mark.parametrize("nodelist", ["", "nid[1-2", "nid1-2]", "n[[1]]", "n[a-b]", ","])
def test_bad_nodelists(nodelist):
    with pytest.raises(ValueError, match="nodelist"):
        first_host(nodelist)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(rank=2, world_size=2), "rank"),
        (dict(local_rank=1), "local_rank"),
        (dict(node_rank=1, num_nodes=1), "node_rank"),
        (dict(world_size=2.0), "world_size"),
        (dict(launcher="dask"), "launcher"),
        (dict(master_addr=""), "master_addr"),
    ],
)
def test_dist_env_validates_fields(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        DistEnv(**kwargs)


def test_local_env():
    env = DistEnv.local(1, 3, 4567)
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == (1, 1, 3, 3)
    assert (env.master_port, env.launcher, env.num_nodes) == (4567, "spawn", 1)


def test_backend_choice_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend() == "gloo"
    with pytest.raises(ValueError, match="backend nccl needs CUDA; use --backend gloo"):
        resolve_backend("nccl")
    with pytest.raises(ValueError, match="^backend"):
        resolve_backend("mpi")


def test_device_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for(DistEnv.local(1, 2, 29500), "gloo") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA"):
        device_for(DistEnv(), "gloo", cuda=True)
    with pytest.raises(ValueError, match="backend nccl needs CUDA"):
        device_for(DistEnv(), "nccl")


@pytest.fixture
def four_gpus(monkeypatch):
    """Pretend CUDA with four devices and NCCL (only ``torch.device`` objects are made)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return monkeypatch


def test_device_is_local_rank_not_rank_mod_4(four_gpus):
    env = DistEnv(rank=6, local_rank=1, world_size=9, local_world_size=3)
    assert device_for(env, "nccl") == torch.device("cuda", 1)
    assert device_for(env, "gloo") == torch.device("cuda", 1)
    assert device_for(env, "gloo", cuda=False) == torch.device("cpu")
    with pytest.raises(ValueError, match="nccl"):
        device_for(env, "nccl", cuda=False)
    assert resolve_backend() == "nccl"


def test_device_beyond_visible_gpus(four_gpus):
    env = DistEnv(rank=5, local_rank=5, world_size=8, local_world_size=8)
    with pytest.raises(ValueError, match="^local_rank: 5 has no CUDA device"):
        device_for(env, "nccl")


def test_device_when_launcher_binds_one_gpu_per_rank(four_gpus):
    four_gpus.setattr(torch.cuda, "device_count", lambda: 1)
    env = DistEnv(rank=3, local_rank=3, world_size=4, local_world_size=4)
    with pytest.raises(ValueError, match="local_rank"):
        device_for(env, "nccl")
    four_gpus.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert device_for(env, "nccl") == torch.device("cuda", 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_on_a_real_gpu():
    assert device_for(DistEnv(), "gloo") == torch.device("cuda", 0)
