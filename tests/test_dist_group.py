"""Process group lifecycle: world size 1 without torch.distributed, and two gloo ranks on the CPU
that all-reduce, broadcast and gather, then tear down after success and after an exception."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from pgti_core.dist import (
    DistEnv,
    all_reduce_sum,
    barrier,
    broadcast_object,
    distributed,
    free_port,
    gather_objects,
    init_group,
    is_initialized,
    is_main,
    teardown,
)


def test_world_one_needs_no_process_group():
    group = init_group(DistEnv(), "gloo")
    assert (group.initialized, group.backend, group.device) == (False, "gloo", torch.device("cpu"))
    assert not is_initialized()
    t = torch.tensor([2.0, 3.0])
    assert all_reduce_sum(t) is t and t.tolist() == [2.0, 3.0]
    assert is_main()
    barrier()
    assert broadcast_object({"a": 1}) == {"a": 1}
    assert gather_objects({"rank": 0}) == [{"rank": 0}]
    teardown()


def test_context_manager_reraises_at_world_one():
    with pytest.raises(KeyError), distributed(DistEnv(), "gloo") as group:
        assert not group.initialized
        raise KeyError("x")
    assert not is_initialized()


def test_nccl_without_cuda_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="backend nccl needs CUDA; use --backend gloo"):
        init_group(DistEnv(), "nccl")
    with pytest.raises(ValueError, match="backend nccl needs CUDA"):
        init_group(DistEnv.local(0, 2, free_port()), "nccl")
    assert not is_initialized()


def test_bad_arguments():
    with pytest.raises(ValueError, match="^backend"):
        init_group(DistEnv(), "tcp")
    with pytest.raises(ValueError, match="^timeout_s"):
        init_group(DistEnv(), "gloo", timeout_s=0)


def test_free_port_is_bindable():
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def _rank(rank: int, world: int, ports: list[int], out: str) -> None:
    """One spawned rank: a successful group, then a group whose body raises."""
    torch.set_num_threads(1)
    r: dict = {}
    with distributed(DistEnv.local(rank, world, ports[0]), "gloo", timeout_s=60) as group:
        r["initialized"] = group.initialized and is_initialized()
        r["main"] = is_main()
        r["sum"] = all_reduce_sum(torch.tensor([rank + 1.0, 10.0])).tolist()
        r["broadcast"] = broadcast_object({"from": rank}, src=1)
        r["gathered"] = gather_objects({"rank": rank, "pid": os.getpid()})
        try:
            init_group(group.env, "gloo")
        except RuntimeError as e:
            r["double_init"] = str(e)
    r["after_success"] = is_initialized()
    try:
        with distributed(DistEnv.local(rank, world, ports[1]), "gloo", timeout_s=60):
            all_reduce_sum(torch.ones(1))
            raise RuntimeError(f"boom {rank}")
    except RuntimeError as e:
        r["error"] = str(e)
    r["after_error"] = is_initialized()
    Path(out, f"{rank}.json").write_text(json.dumps(r))


def _spawn(fn, nprocs: int, args: tuple, deadline_s: float = 120.0) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` fresh processes; fail (not hang) past the deadline."""
    ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    end = time.monotonic() + deadline_s
    while not ctx.join(timeout=1):
        if time.monotonic() > end:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"ranks still running after {deadline_s} s")


@pytest.mark.slow
def test_two_gloo_ranks(tmp_path):
    ports = [free_port()]
    while len(ports) < 2:
        ports += [p for p in [free_port()] if p not in ports]
    _spawn(_rank, 2, (2, ports, str(tmp_path)))
    r0, r1 = (json.loads((tmp_path / f"{k}.json").read_text()) for k in range(2))
    for r in (r0, r1):
        assert r["initialized"] and r["sum"] == [3.0, 20.0]
        assert r["broadcast"] == {"from": 1}
        assert "already initialized" in r["double_init"]
        assert not r["after_success"] and not r["after_error"]
    assert (r0["main"], r1["main"]) == (True, False)
    assert [g["rank"] for g in r0["gathered"]] == [0, 1]
    assert r0["gathered"][0]["pid"] != r0["gathered"][1]["pid"]
    assert r1["gathered"] is None
    assert (r0["error"], r1["error"]) == ("boom 0", "boom 1")
