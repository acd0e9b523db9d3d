"""Dataset specs (``metr-la``, ``metr-la:nodes=50,steps=2000``, ``file:dcrnn:PATH``) and loading.

Synthetic specs name a profile with optional ``nodes``/``steps`` overrides. Real files use
``file:FORMAT:PATH[,key=value]``: ``file:dcrnn:DIR/metr-la.h5[,adj=PATH]``, ``file:pems:DIR``
(PGT-I's pair of files), ``file:largest:DIR/ca_his_2019.h5[,adj=PATH]``. Paths may not contain
commas. Every dataset is written once to the cache (:mod:`pgti_core.data.cache`) and then loaded
as a read-only memmap, so ranks on one host share its pages.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pgti_core.data.cache import Built, ValuesWriter, load_or_build
from pgti_core.data.formats import OPENERS, FileSource
from pgti_core.data.series import Series
from pgti_core.data.synthetic import (
    GENERATOR_VERSION,
    PROFILES,
    Profile,
    fill_synthetic,
    synthetic_graph,
    synthetic_meta,
    synthetic_timestamps,
)
from pgti_core.data.windows import WindowSpec, split_starts

SYNTHETIC = "synthetic"
_OPTIONS = {SYNTHETIC: ("nodes", "steps"), "dcrnn": ("adj",), "pems": (), "largest": ("adj",)}
_FILE_PROFILE = {"dcrnn": "metr-la", "pems": "pems", "largest": "pems"}


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec; predicts the series' shape without generating or reading values.

    Args:
        kind: ``"synthetic"`` or a file format (``dcrnn``, ``pems``, ``largest``).
        target: profile name (synthetic) or the table / directory path (file).
        nodes_override: synthetic sensor count, if not the profile's.
        steps_override: synthetic length, if not the profile's.
        adj: adjacency file of a real dataset, if not the default location.
    """

    kind: str
    target: str
    nodes_override: int | None = None
    steps_override: int | None = None
    adj: str | None = None

    @property
    def is_file(self) -> bool:
        return self.kind != SYNTHETIC

    @property
    def profile(self) -> Profile:
        """Defaults (window, batch, step interval): the named profile, or the closest for a file."""
        if not self.is_file:
            return PROFILES[self.target]
        stem = Path(self.target).stem
        return PROFILES[
            stem if self.kind == "dcrnn" and stem in PROFILES else _FILE_PROFILE[self.kind]
        ]

    @property
    def window(self) -> WindowSpec:
        return self.profile.window

    @property
    def batch_size(self) -> int:
        return self.profile.batch_size

    @property
    def label(self) -> str:
        """Short name for results rows: ``metr-la``, ``metr-la:nodes=50``, ``file:metr-la``."""
        if self.is_file:
            table = (
                Path(self.target) / "pems_cali_speed.h5"
                if self.kind == "pems"
                else Path(self.target)
            )
            return f"file:{table.stem}"
        opts = [
            f"{k}={v}"
            for k, v in (("nodes", self.nodes_override), ("steps", self.steps_override))
            if v
        ]
        return ":".join([self.target, ",".join(opts)]) if opts else self.target

    @property
    def text(self) -> str:
        """The canonical spec string; :func:`parse_dataset_spec` reads it back to an equal spec."""
        if not self.is_file:
            return self.label
        return ",".join(
            [f"file:{self.kind}:{self.target}"] + ([f"adj={self.adj}"] if self.adj else [])
        )

    @property
    def nodes(self) -> int:
        return self.shape[1]

    @property
    def steps(self) -> int:
        return self.shape[0]

    @property
    def features(self) -> int:
        return self.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes of the float32 series."""
        return self.steps * self.nodes * self.features * 4

    @cached_property
    def shape(self) -> tuple[int, int, int]:
        """``(T, N, F)`` of the series; a file spec reads its table's header (not its values)."""
        if self.is_file:
            return self.open().shape
        p = self.profile
        return (self.steps_override or p.steps, self.nodes_override or p.nodes, p.features)

    def open(self) -> FileSource:
        """The :class:`FileSource` of a real dataset (files located and checked, values unread)."""
        if not self.is_file:
            raise ValueError(f"spec: {self.label} is synthetic, not a file")
        if self.kind == "pems":
            return OPENERS["pems"](self.target)
        return OPENERS[self.kind](self.target, self.adj)


def parse_dataset_spec(text: str) -> DatasetSpec:
    """Parse ``PROFILE[:nodes=N,steps=T]`` or ``file:FORMAT:PATH[,adj=PATH]``.

    Raises:
        ValueError: unknown profile or format, unknown or repeated key, non-integer value,
            ``nodes < 2``, or too few steps for the profile's train/val/test windows.
    """
    text = text.strip()
    if text.startswith("file:"):
        kind, _, rest = text[len("file:") :].partition(":")
        if kind not in _FILE_PROFILE:
            raise ValueError(
                f"dataset {text!r}: unknown file format {kind!r}; use one of {', '.join(_FILE_PROFILE)}"
            )
        target, *pairs = rest.split(",")
        if not target:
            raise ValueError(f"dataset {text!r}: missing path after 'file:{kind}:'")
    else:
        target, _, rest = text.partition(":")
        kind, pairs = SYNTHETIC, rest.split(",") if rest else []
        if target not in PROFILES:
            raise ValueError(
                f"dataset {text!r}: unknown profile {target!r}; use one of {', '.join(PROFILES)} "
                "or file:FORMAT:PATH"
            )
    options = _parse_options(text, pairs, _OPTIONS[kind])
    if kind != SYNTHETIC:
        return DatasetSpec(kind, target, adj=options.get("adj"))
    profile = PROFILES[target]
    nodes, steps = (_integer(text, options, k) for k in ("nodes", "steps"))
    if nodes is not None and nodes < 2:
        raise ValueError(f"dataset {text!r}: nodes must be >= 2, got {nodes}")
    if steps is not None:
        try:
            split_starts(steps, profile.window)
        except ValueError as exc:
            raise ValueError(f"dataset {text!r}: steps={steps} is too short ({exc})") from exc
    return DatasetSpec(
        kind,
        target,
        nodes_override=None if nodes == profile.nodes else nodes,
        steps_override=None if steps == profile.steps else steps,
    )


def load_dataset(
    spec: DatasetSpec | str,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    verify: bool = False,
) -> Series:
    """Load a dataset as a Series backed by a read-only memmap, creating its cache entry once.

    Args:
        spec (DatasetSpec | str): what to load (a string goes through :func:`parse_dataset_spec`).
        seed (int, default 0): generator seed (ignored for real files).
        cache_dir (path, optional): cache directory (default ``$PGTI_DATA_DIR``, then the user
            cache ``~/.cache/pgti``).
        verify (bool, default False): check the sha256 of an existing cache entry even if this
            host verified it before (it always is before its first use here). A damaged
            generated entry is rebuilt; a damaged conversion of a real file is refused.
    """
    if isinstance(spec, str):
        spec = parse_dataset_spec(spec)
    if seed < 0:
        raise ValueError(f"seed: must be >= 0, got {seed}")
    if spec.is_file:
        return _load_file(spec, cache_dir, verify)
    p, shape = spec.profile, spec.shape
    key = f"{p.name}-n{shape[1]}-t{shape[0]}-seed{seed}-v{GENERATOR_VERSION}"

    def build(out: ValuesWriter) -> Built:
        graph = synthetic_graph(p, shape[1], seed)
        fill_synthetic(out, p, graph, seed)
        meta = {**synthetic_meta(p, shape[1], shape[0], seed), "spec": spec.text}
        timestamps = synthetic_timestamps(p, shape[0])
        return Built(graph.edge_index, graph.edge_weight, spec.label, timestamps, meta)

    return load_or_build(key, shape, build, cache_dir=cache_dir, verify=verify)


def _load_file(spec: DatasetSpec, cache_dir: str | os.PathLike | None, verify: bool) -> Series:
    """Convert a real file into the cache once (keyed by the files' path, size and mtime)."""
    source = spec.open()
    identity = hashlib.sha256()
    for path in (source.meta["table"], source.meta["adj"]):
        st = os.stat(path)
        identity.update(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|".encode())
    key = f"file-{spec.kind}-{source.name}-{identity.hexdigest()[:16]}"

    def build(out: ValuesWriter) -> Built:
        timestamps = source.fill(out)
        meta = {**source.meta, "spec": spec.text}
        return Built(source.edge_index, source.edge_weight, spec.label, timestamps, meta)

    return load_or_build(
        key, source.shape, build, cache_dir=cache_dir, verify=verify, rebuild=False
    )


def _parse_options(text: str, pairs: list[str], allowed: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ValueError(f"dataset {text!r}: expected key=value, got {pair!r}")
        if key not in allowed:
            raise ValueError(
                f"dataset {text!r}: unknown key {key!r}; allowed: {', '.join(allowed) or 'none'}"
            )
        if key in options:
            raise ValueError(f"dataset {text!r}: key {key!r} given twice")
        options[key] = value
    return options


def _integer(text: str, options: dict[str, str], key: str) -> int | None:
    if key not in options:
        return None
    try:
        return int(options[key])
    except ValueError:
        raise ValueError(
            f"dataset {text!r}: {key} must be an integer, got {options[key]!r}"
        ) from None
