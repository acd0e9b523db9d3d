"""Series stored on disk once and loaded as read-only memmaps, so ranks share their pages.

A cache entry is ``<dir>/<key>/`` holding ``values.npy`` (written chunk by chunk, front to
back), ``edges.npz``, optional ``timestamps.npy`` and ``meta.json``
(shape, dtype, sha256 of ``values.npy``, creation time, provenance). Entries are built in a
staging directory and renamed into place under a file lock, so a killed build never leaves a
partial entry and ranks that start together build it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from numpy.lib.format import dtype_to_descr, write_array_header_1_0

from pgti_core.data.series import Series
from pgti_core.progress import progress

try:
    import fcntl
except ImportError:  # not POSIX: rely on the atomic rename alone
    fcntl = None

CACHE_FORMAT = 1
_HASH_BLOCK = 16 << 20
_STAGING = ".staging"


class CacheError(ValueError):
    """A cache entry is missing a file or disagrees with its metadata."""


@dataclass
class Built:
    """What a builder returns after writing the values it was given.

    Args:
        edge_index: ``[2, E]`` int64.
        edge_weight: ``[E]`` float32.
        name: series name.
        timestamps: optional ``[T]`` datetime64 stamps.
        meta: provenance stored in ``meta.json`` (profile, seed, source files, ...).
    """

    edge_index: np.ndarray
    edge_weight: np.ndarray
    name: str
    timestamps: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$PGTI_DATA_DIR``, else ``$XDG_CACHE_HOME/pgti``
    (``~/.cache/pgti``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("PGTI_DATA_DIR"):
        return Path(os.environ["PGTI_DATA_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "pgti"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 16 MB blocks (with a progress bar: large series take minutes)."""
    digest = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f, progress(total=size, unit="B", unit_scale=True,
                                         desc=f"sha256 {Path(path).parent.name}") as bar:  # fmt: skip
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def load_entry(path: str | os.PathLike, verify: bool = False) -> Series:
    """Load a cache entry as a :class:`Series` whose values are a read-only memmap.

    Shape and dtype of ``values.npy`` are always checked against ``meta.json``; the sha256
    checksum only with ``verify=True`` (it reads the whole file).

    Raises:
        CacheError: a file is missing or disagrees with the metadata.
    """
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
        values = np.load(path / "values.npy", mmap_mode="r")
        with np.load(path / "edges.npz") as edges:
            edge_index, edge_weight = edges["edge_index"], edges["edge_weight"]
        stamps = path / "timestamps.npy"
        timestamps = np.load(stamps) if stamps.exists() else None
    except (OSError, ValueError, KeyError) as exc:
        raise CacheError(f"cache entry {path}: unreadable ({exc})") from exc
    if list(values.shape) != meta.get("shape") or str(values.dtype) != meta.get("dtype"):
        raise CacheError(
            f"cache entry {path}: values.npy is {values.dtype}{list(values.shape)}, "
            f"meta.json says {meta.get('dtype')}{meta.get('shape')}"
        )
    if verify and sha256_file(path / "values.npy") != meta.get("sha256"):
        raise CacheError(f"cache entry {path}: values.npy does not match its sha256 in meta.json")
    return Series(
        values,
        edge_index,
        edge_weight,
        name=meta.get("name", path.name),
        timestamps=timestamps,
        meta={**meta, "cache_path": str(path)},
    )


def load_or_build(
    key: str,
    shape: tuple[int, int, int],
    build: Callable[[ValuesWriter], Built],
    cache_dir: str | os.PathLike | None = None,
    verify: bool = False,
) -> Series:
    """Load the entry ``key``, building it first if it is missing or invalid.

    Args:
        key (str): entry name (a directory name: no path separators).
        shape (tuple): ``(T, N, F)`` of the values.
        build (Callable): fills the :class:`ValuesWriter` it is given (``out[t0:t1] = block`` in
            step order) and returns a :class:`Built`.
        cache_dir (path, optional): see :func:`cache_root`.
        verify (bool, default False): also check the sha256 of an existing entry.
    """
    if not key or "/" in key or os.sep in key or key.startswith("."):
        raise ValueError(f"key: must be a plain directory name, got {key!r}")
    root = cache_root(cache_dir)
    final = root / key
    with contextlib.suppress(CacheError):
        return _load_shaped(final, shape, verify)
    staging = root / _STAGING / key  # this key's unfinished builds, renamed into place when done
    staging.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{key}.lock") as exclusive:
        if final.exists():
            try:
                return _load_shaped(final, shape, verify)
            except CacheError as exc:
                warnings.warn(f"{exc}; rebuilding it", stacklevel=2)
                _discard(final, staging)
        if exclusive:  # nobody else builds this key now: leftovers are from killed builds
            for stale in staging.iterdir():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=staging))
        try:
            _write_entry(tmp, key, shape, build)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; entries are shared read-only
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.exists():
                    raise
                # another process without a working lock finished first: keep its entry
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_entry(final)


def _load_shaped(path: Path, shape: tuple[int, int, int], verify: bool) -> Series:
    series = load_entry(path, verify=verify)
    if tuple(series.values.shape) != tuple(shape):
        raise CacheError(
            f"cache entry {path}: holds {list(series.values.shape)}, wanted {list(shape)}"
        )
    return series


class ValuesWriter:
    """``values.npy`` written front to back: builders assign ``out[t0:t1] = block`` in step order.

    Plain sequential writes keep the process's RSS at one block, where a writable memmap would
    keep every written page resident (and counted) until the kernel writes it back; the sha256 is
    computed on the way, so the file is never read again.

    Args:
        path: the ``.npy`` file to create.
        shape: ``(T, N, F)``; the dtype is float32.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int], desc: str = "") -> None:
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(np.float32)
        self._bar = progress(total=self.shape[0], unit="step", desc=desc or path.parent.name)
        self._file = open(path, "wb")  # closed on leaving the with block
        self._hash = hashlib.sha256()
        self._next = 0
        header = io.BytesIO()
        write_array_header_1_0(
            header,
            {"descr": dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape},
        )
        self._write(header.getvalue())

    def __setitem__(self, index: slice, block: np.ndarray) -> None:
        start = (index.start or 0) if isinstance(index, slice) else None
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if start != self._next or block.shape[1:] != self.shape[1:]:
            raise ValueError(
                f"values: expected steps from {self._next} as [rows, {self.shape[1]}, "
                f"{self.shape[2]}], got {index} with shape {block.shape}"
            )
        if self._next + len(block) > self.shape[0]:
            raise ValueError(f"values: writing past step {self.shape[0]}")
        self._write(block)
        self._next += len(block)
        self._bar.update(len(block))

    def _write(self, data) -> None:
        self._file.write(data)
        self._hash.update(data)

    def __enter__(self) -> ValuesWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()
        self._bar.close()

    def sha256(self) -> str:
        """Hex sha256 of the whole file; raises if the build did not write every step."""
        if self._next != self.shape[0]:
            raise ValueError(f"values: the build wrote {self._next} of {self.shape[0]} steps")
        return self._hash.hexdigest()


def _write_entry(
    tmp: Path, key: str, shape: tuple[int, int, int], build: Callable[[ValuesWriter], Built]
) -> None:
    with ValuesWriter(tmp / "values.npy", shape, desc=f"building {key}") as values:
        built = build(values)
    checksum = values.sha256()
    np.savez(
        tmp / "edges.npz",
        edge_index=np.asarray(built.edge_index, dtype=np.int64),
        edge_weight=np.asarray(built.edge_weight, dtype=np.float32),
    )
    if built.timestamps is not None:
        np.save(tmp / "timestamps.npy", np.asarray(built.timestamps))
    meta = {
        **built.meta,
        "key": key,
        "name": built.name,
        "shape": list(values.shape),
        "dtype": "float32",
        "sha256": checksum,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cache_format": CACHE_FORMAT,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def _discard(entry: Path, staging: Path) -> None:
    """Move a bad entry aside (readers may still map its files) and delete it."""
    aside = Path(tempfile.mkdtemp(dir=staging))
    os.rename(entry, aside / entry.name)
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path``; yields False where locking is unavailable."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except (AttributeError, OSError):  # no fcntl, or a file system without flock
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
