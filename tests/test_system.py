"""System description: the keys the results need, valid JSON written atomically, env filtering."""

import json

import pytest
import torch

from pgti_core.instruments import describe_system, write_system_json
from pgti_core.instruments.system import git_sha, gpus, launcher_env

KEYS = {
    "hostname", "os", "cpu_model", "cpu_cores_physical", "cpu_cores_logical", "ram_total_bytes",
    "ram_available_bytes", "python", "torch", "cuda", "cudnn", "nccl", "torch_geometric", "numpy",
    "gpu_driver", "gpus", "gpu_source", "git_sha", "env",
}  # fmt: skip


def test_describe_system_has_the_keys():
    info = describe_system()
    assert KEYS <= set(info)
    assert (
        info["cpu_cores_logical"] >= 1 and info["ram_total_bytes"] > info["ram_available_bytes"] > 0
    )
    assert info["torch"] == torch.__version__
    assert isinstance(info["gpus"], list) and isinstance(info["env"], dict)


def test_write_system_json_is_valid_and_atomic(tmp_path):
    path = tmp_path / "sub" / "system.json"
    written = write_system_json(path, extra={"hosts": 3, "run_id": "abc"})
    loaded = json.loads(path.read_text())
    assert loaded == json.loads(json.dumps(written, default=str))
    assert loaded["hosts"] == 3 and loaded["run_id"] == "abc"
    assert KEYS <= set(loaded)
    assert [p.name for p in path.parent.iterdir()] == ["system.json"]  # no temp file left


def test_launcher_env_keeps_only_relevant_names():
    env = {
        "NCCL_DEBUG": "INFO",
        "SLURM_JOB_ID": "7",
        "OMP_NUM_THREADS": "1",
        "WORLD_SIZE": "4",
        "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "x",
        "MY_NCCL_THING": "no",
    }
    assert launcher_env(env) == {
        "NCCL_DEBUG": "INFO",
        "OMP_NUM_THREADS": "1",
        "SLURM_JOB_ID": "7",
        "WORLD_SIZE": "4",
    }


def test_git_sha_outside_a_checkout_is_none(tmp_path):
    assert git_sha(tmp_path) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU path")
def test_no_gpus_without_cuda():
    found, driver, source = gpus()
    assert found == [] and driver is None and source.startswith("none")
