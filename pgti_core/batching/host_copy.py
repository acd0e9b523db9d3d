"""One normalized host copy per node: a file in the dataset's cache entry, mapped by every rank.

With ``host_copy="private"`` each rank reads the series into its own anonymous buffer, so P local
ranks hold P copies. With ``host_copy="shared"`` the first rank writes the normalized span once to
``<entry>/normalized/<key>.npy`` (streamed, checksummed, renamed into place under a lock) and
every rank maps it read-only (copy-on-write, never written): the pages live once in the page
cache and PSS splits them between the ranks, so the node holds one copy. A copy whose metadata
disagrees with the source or the normalizer (stale) or whose bytes fail their sha256 (corrupt)
is rebuilt.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from pgti_core.batching.base import load_normalized
from pgti_core.data.cache import ValuesWriter, _locked, sha256_file
from pgti_core.data.normalize import Normalizer
from pgti_core.data.series import Series

HOST_COPIES: tuple[str, ...] = ("private", "shared")
NORMALIZED_DIR = "normalized"


def check_host_copy(value: str) -> str:
    """Validate a ``host_copy`` setting; raises ``ValueError`` naming the choices."""
    if value not in HOST_COPIES:
        raise ValueError(f"host_copy: unknown {value!r}; choose from {', '.join(HOST_COPIES)}")
    return value


def shared_normalized(series: Series, t0: int, t1: int, normalizer: Normalizer) -> np.ndarray:
    """The normalized ``series.values[t0:t1]`` as a read-only-by-convention memmap shared per node.

    Raises:
        ValueError: the series is not a cache entry (it has no file to share).
    """
    entry, source_sha = series.meta.get("cache_path"), series.meta.get("sha256")
    if not entry or not source_sha:
        raise ValueError(
            "host_copy: 'shared' needs a dataset loaded from the cache (load_dataset); "
            "this series has no cache entry, use 'private'"
        )
    folder = Path(entry) / NORMALIZED_DIR
    folder.mkdir(exist_ok=True)
    key = f"t{t0}-{t1}-c{normalizer.channel}-{normalizer.mean.hex()}-{normalizer.std.hex()}"
    path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    want = {
        "source_sha256": source_sha,
        "t0": t0,
        "t1": t1,
        "normalizer": normalizer.as_dict(),
        "shape": [t1 - t0, *map(int, series.values.shape[1:])],
    }
    with _locked(folder / f"{key}.lock"):
        if not _valid(path, meta_path, want):
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npy.tmp")
            os.close(fd)
            try:
                with ValuesWriter(Path(tmp), tuple(want["shape"])) as out:
                    for off, block in load_normalized(series.values, t0, t1, normalizer):
                        out[off : off + len(block)] = block
                meta_tmp = Path(tmp).with_suffix(".json.tmp")
                meta_tmp.write_text(json.dumps({**want, "sha256": out.sha256()}))
                os.replace(tmp, path)
                os.replace(meta_tmp, meta_path)
            finally:
                for leftover in (Path(tmp), Path(tmp).with_suffix(".json.tmp")):
                    leftover.unlink(missing_ok=True)
    # mode "c": a private, copy-on-write mapping (torch wants a writable array) that is never
    # written, so its pages stay the page cache's, shared by every rank that maps the file
    return np.load(path, mmap_mode="c")


def _valid(path: Path, meta_path: Path, want: dict) -> bool:
    """Whether the copy at ``path`` is current (metadata) and intact (size and sha256)."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or {k: meta.get(k) for k in want} != want:
        return False  # stale: another source, span or normalizer
    try:
        return sha256_file(path) == meta.get("sha256")
    except OSError:
        return False
