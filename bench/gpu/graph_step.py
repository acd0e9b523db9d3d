"""One training step of the loop, eager or captured once and replayed (a CUDA graph or
``torch.compile(mode="reduce-overhead")``).

The paper's cell is tiny (150 parameters) and a step issues thousands of small kernels, so on a
GPU the step is launch-bound; replaying a captured graph removes the per-kernel launch cost. The
step computes exactly what :func:`pgti_core.train.loop.fit` computes (masked MAE on de-normalized
channel 0, ``zero_grad``, backward, Adam), on static input tensors that each call overwrites.

With ``mode="eager"`` the same :class:`TrainStep` runs without capture, so its losses can be
compared with the loop's on any machine (tests/test_gpu_check.py does).
"""

from __future__ import annotations

import torch

from pgti_core.data.normalize import Normalizer
from pgti_core.train.metrics import masked_mae

MODES = ("eager", "graph", "compile")
WARMUP = 3
"""Eager steps before capture (the allocator and lazy state settle; PyTorch's graph recipe)."""


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: Normalizer):
    pred = model(x)[..., 0]
    return masked_mae(norm.inverse(pred), norm.inverse(y[..., 0]))


class TrainStep:
    """``step(x, y) -> loss`` (a 0-d tensor on the device) for batches of one fixed shape.

    Args:
        model: the network, already on ``device``.
        normalizer: de-normalizes channel 0 for the loss.
        x_shape, y_shape: the batch shapes (the static inputs' shapes).
        device: where the step runs.
        mode: ``eager`` (no capture; any device), ``graph`` (``torch.cuda.CUDAGraph`` captured
            after :data:`WARMUP` eager steps) or ``compile`` (``torch.compile`` of the loss with
            ``mode="reduce-overhead"``, which captures CUDA graphs itself).
        lr: Adam learning rate.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        normalizer: Normalizer,
        x_shape: tuple[int, ...],
        y_shape: tuple[int, ...],
        device: torch.device | str,
        mode: str = "eager",
        lr: float = 1e-3,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        self.device = torch.device(device)
        if mode != "eager" and self.device.type != "cuda":
            raise ValueError(f"mode: {mode!r} needs a CUDA device, got {self.device}")
        self.model, self.normalizer, self.mode = model, normalizer, mode
        self.x = torch.zeros(x_shape, device=self.device)
        self.y = torch.zeros(y_shape, device=self.device)
        # capturable keeps Adam's step counter on the device, as a graph replay requires
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, capturable=mode == "graph")
        self._loss_fn = torch.compile(_loss, mode="reduce-overhead") if mode == "compile" else _loss
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_loss: torch.Tensor | None = None
        self.steps = 0

    def _eager(self) -> torch.Tensor:
        if self.mode == "compile":  # a new step: the compiled graphs' outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        loss = self._loss_fn(self.model, self.x, self.y, self.normalizer)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach().clone() if self.mode == "compile" else loss.detach()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)  # grads are then allocated inside the graph's pool
        with torch.cuda.graph(graph):
            loss = _loss(self.model, self.x, self.y, self.normalizer)
            loss.backward()
            self.opt.step()
        self._graph, self._static_loss = graph, loss.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Copy the batch into the static inputs and run one step; returns the step's loss."""
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        self.steps += 1
        if self.mode != "graph":
            return self._eager()
        if self._graph is None and self.steps <= WARMUP:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                loss = self._eager()
            torch.cuda.current_stream(self.device).wait_stream(side)
            return loss
        if self._graph is None:
            self._capture()  # recording runs nothing: replay this step too
        self._graph.replay()
        return self._static_loss.clone()
