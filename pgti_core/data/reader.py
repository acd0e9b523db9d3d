"""Reading steps of a series into a buffer the caller owns, without leaving file pages mapped.

Slicing a read-only memmap faults the file's pages into the process: they stay resident (and
count in its RSS and PSS) for as long as the mapping lives, i.e. the whole run. For a memmap of
an ``.npy`` file :func:`read_steps` instead reads the bytes with ``os.preadv`` straight into the
destination, so after the build the process holds only what it copied; the kernel's page cache
keeps the file (shared, reclaimable, charged to no process).
"""

from __future__ import annotations

import mmap
import os

import numpy as np
import torch

Values = np.ndarray | torch.Tensor

_READ_BYTES = 64 << 20  # one preadv call at most; the destination is written in place


def file_backing(values: Values) -> tuple[str, int] | None:
    """``(path, byte offset of element 0)`` when ``values`` is a whole C-ordered memmap of a file.

    Views of a memmap (slices, transposes) return ``None``: their offset is not the file's.
    """
    if not isinstance(values, np.memmap) or not isinstance(values.base, mmap.mmap):
        return None
    if not values.flags.c_contiguous or values.filename is None:
        return None
    return str(values.filename), int(values.offset)


def read_steps(values: Values, t0: int, t1: int, out: np.ndarray | None = None) -> np.ndarray:
    """``values[t0:t1]`` as a float32 C-ordered array (``out`` if given, filled in place).

    A file-backed memmap is read with explicit reads (no pages mapped); tensors and arrays are
    copied.

    Raises:
        ValueError: ``out`` has the wrong shape or dtype, or the file ends early.
    """
    shape = (t1 - t0, *values.shape[1:])
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out: expected a C-ordered float32 {shape}, got {out.dtype}{out.shape}")
    backing = file_backing(values)
    if backing is None or values.dtype != np.float32:
        src = values[t0:t1]
        np.copyto(out, src.numpy() if isinstance(src, torch.Tensor) else src, casting="unsafe")
        return out
    path, offset = backing
    step_bytes = int(np.prod(values.shape[1:], dtype=np.int64)) * 4
    view = memoryview(out.reshape(-1).view(np.uint8))
    pos, start = 0, offset + t0 * step_bytes
    fd = os.open(path, os.O_RDONLY)
    try:
        while pos < len(view):
            got = os.preadv(fd, [view[pos : pos + _READ_BYTES]], start + pos)
            if got <= 0:
                raise ValueError(f"{path}: ends {len(view) - pos} bytes before step {t1}")
            pos += got
    finally:
        os.close(fd)
    return out
