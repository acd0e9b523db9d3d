"""Training: strategies give identical losses, DDP equals single-process, the CLI behaves."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from conftest import random_series
from torch.nn.parallel import DistributedDataParallel

from pgti_core.batching import WindowSpec, build_strategy, split_starts
from pgti_core.data.normalize import train_window_stats
from pgti_core.dist.env import DistEnv
from pgti_core.dist.group import distributed, free_port
from pgti_core.models.registry import build_model
from pgti_core.train.loop import fit
from pgti_core.train.metrics import masked_mae
from pgti_core.train.run import RunConfig, run

SPEC = WindowSpec(4, 4)
TINY = "chickenpox"


def _setup(series, name, rank=0, world=1, split="train", **kw):
    splits = split_starts(series.num_steps, SPEC)
    norm = train_window_stats(series.values, SPEC, splits["train"])
    strat = build_strategy(
        name,
        series,
        SPEC,
        splits[split],
        norm,
        batch_size=8,
        rank=rank,
        world_size=world,
        seed=3,
        shuffle=split == "train",
        **kw,
    )
    return strat, norm


def _model(series, name="dcrnn-paper"):
    torch.manual_seed(0)
    return build_model(
        name,
        num_nodes=series.num_nodes,
        num_features=series.num_features,
        edge_index=series.edge_index,
        edge_weight=series.edge_weight,
        lags=SPEC.lags,
        horizon=SPEC.horizon,
    )


def test_strategies_train_identically():
    series = random_series(steps=300, nodes=5)
    losses = {}
    for name in ("standard", "index", "gpu-index", "partitioned"):
        train, norm = _setup(series, name)
        val, _ = _setup(series, name, split="val")
        result = fit(_model(series), train, val, norm, epochs=2)
        losses[name] = [r.losses for r in result.epochs]
        assert result.best_val["mae"] < float("inf")
    assert losses["standard"] == losses["index"] == losses["gpu-index"]
    # partitioned visits other batches (contiguous runs), so only its shape of progress is checked
    assert len(losses["partitioned"]) == 2


def test_training_reduces_loss():
    series = random_series(steps=300, nodes=5)
    train, norm = _setup(series, "index")
    val, _ = _setup(series, "index", split="val")
    result = fit(_model(series), train, val, norm, epochs=4, lr=1e-2)
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss


def _no_missing(seed=0):
    s = random_series(steps=300, nodes=5, seed=seed)
    v = np.array(s.values)
    v[v == 0] = 1.0  # no masked entries: the DDP mean of rank losses is the global mean
    s.values = v
    return s


def _step(model, x, y, norm):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = masked_mae(norm.inverse(model(x)[..., 0]), norm.inverse(y[..., 0]))
    loss.backward()
    grads = [p.grad.detach().clone() for p in model.parameters()]
    opt.step()
    return grads, [p.detach().clone() for p in model.parameters()]


def _ddp_rank(rank, world, port, name, out):
    torch.set_num_threads(1)
    series = _no_missing()
    with distributed(DistEnv.local(rank, world, port), "gloo"):
        strat, norm = _setup(series, name, rank=rank, world=world)
        starts = strat.plan()[0]
        x, y = strat.batch(starts)
        model = DistributedDataParallel(_model(series))
        grads, params = _step(model, x, y, norm)
        if rank == 0:
            torch.save({"grads": grads, "params": params}, out)
        np.save(f"{out}.{rank}.npy", starts)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["index", "partitioned"])
def test_ddp_step_equals_single_process_step(tmp_path, name):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_rank, args=(2, free_port(), name, out), nprocs=2, join=True)
    series = _no_missing()
    strat, norm = _setup(series, name)
    starts = [np.load(f"{out}.{r}.npy") for r in range(2)]
    assert len(starts[0]) == len(starts[1])
    batches = [strat.batch(s) for s in starts]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    grads, params = _step(_model(series), x, y, norm)
    ddp = torch.load(out)
    for g, dg in zip(grads, ddp["grads"], strict=True):
        torch.testing.assert_close(dg, g, atol=1e-6, rtol=1e-5)
    for p, dp in zip(params, ddp["params"], strict=True):
        torch.testing.assert_close(dp, p, atol=1e-6, rtol=0)


def test_run_end_to_end_on_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("PGTI_DATA_DIR", str(tmp_path))
    outcome = run(RunConfig(dataset=TINY, strategy="index", epochs=2))
    s = outcome.summary()
    assert len(s["epochs"]) == 2 and s["best_val"]["mae"] > 0 and s["test"]["mae"] > 0
    assert s["strategy"]["resident_host_bytes"] > 0
    assert s["model_params"] > 0


def _cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.mark.parametrize(
    "args, word",
    [
        (["--model", "nope"], "model"),
        (["--strategy", "nope"], "strategy"),
        (["--dataset", "nope"], "dataset"),
        (["--batch-size", "0"], "batch-size"),
        (["--epochs", "0"], "epochs"),
        (["--backend", "nccl"], "nccl"),
    ],
)
def test_cli_bad_input_one_line(args, word, tmp_path):
    if "nccl" in args and torch.cuda.is_available():
        pytest.skip("nccl is valid with CUDA")
    res = _cli("-m", "pgti_core.train", *args)
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert word in last and "Traceback" not in res.stderr


@pytest.mark.slow
def test_torchrun_two_ranks(tmp_path):
    import os

    env = dict(os.environ, PGTI_DATA_DIR=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    metrics = tmp_path / "m.json"
    res = _cli(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "pgti_core.train",
        "--dataset",
        TINY,
        "--strategy",
        "index",
        "--epochs",
        "1",
        "--metrics-out",
        str(metrics),
        env=env,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "rank 0/2 finished" in res.stderr and "rank 1/2 finished" in res.stderr
    data = json.loads(metrics.read_text())
    assert data["world_size"] == 2 and data["launcher"] == "torchrun"
    assert data["best_val"]["mae"] > 0
