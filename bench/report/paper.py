"""What the paper's artefacts run on: the model, the datasets, the scales, and shared helpers.

Used by every artefact module (:mod:`bench.report.figure5`, :mod:`bench.report.tables`,
:mod:`bench.report.figure7`) and by the stage driver :mod:`bench.report.figures`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.summary import left_out_lines
from pgti_core.data.datasets import parse_dataset_spec

MODEL = "dcrnn-paper"
METR_LA_MODEL = "a3tgcn"
"""Table 3's METR-LA row runs A3T-GCN, as in the artifact (the other datasets run :data:`MODEL`)."""
QUALITY = ("pems-bay", "chickenpox", "windmill")
"""The datasets of Figure 5 and Table 3, as the paper names them (PeMS-Bay, Chickenpox, Windmill)."""
PAPER_NAMES = {
    "metr-la": "METR-LA",
    "pems-bay": "PeMS-Bay",
    "chickenpox": "Chickenpox",
    "windmill": "Windmill",
    "pems": "PeMS",
}
STANDARD_DDP = ("standard-dask", "standard")
DISTRIBUTED_INDEX = ("gpu-index", "index")
"""Figure 7's two lines, each the first strategy of its tuple that has rows."""


@dataclass(frozen=True)
class Scale:
    """How big one ``--scale`` makes the runs.

    Args:
        name: ``small``, ``medium`` or ``full``.
        figure5: dataset spec per entry of :data:`QUALITY` for Figure 5 (whole epochs).
        figure5_epochs: epochs of the Figure 5 runs.
        table3: dataset spec per entry of :data:`QUALITY` for Table 3 (larger: memory is the point).
        table3_epochs: epochs of each Table 3 point.
        table3_max_steps: cap on training steps per epoch in Table 3 (``None``: whole epochs).
        repeats: repeats of each Table 3 and Table 4 point.
        pems: dataset spec of Table 4 and Figure 7 (the paper's PeMS).
        table4_epochs: epochs of each Table 4 point.
        figure7_epochs: epochs of each Figure 7 point.
        figure7_worlds: world sizes of Figure 7.
        table3_metr_la: dataset spec of Table 3's METR-LA / A3T-GCN row.
        figure7_data: dataset spec of Figure 7 (default: ``pems``), long enough that the
            largest world still runs >= 20 steps per rank (else its time is mostly preparation).
        figure7_batch: samples per rank per step in Figure 7 (default: the profile's).
    """

    name: str
    figure5: Mapping[str, str]
    figure5_epochs: int
    table3: Mapping[str, str]
    table3_epochs: int
    table3_max_steps: int | None
    repeats: int
    pems: str
    table4_epochs: int
    figure7_epochs: int
    figure7_worlds: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    table3_metr_la: str = "metr-la"
    figure7_data: str | None = None
    figure7_batch: int | None = None

    @property
    def figure7(self) -> str:
        """The dataset spec of Figure 7."""
        return self.figure7_data or self.pems

    def specs(self) -> dict[str, str]:
        """Every dataset spec of the scale -> the paper's name of its dataset."""
        pairs = [
            *((v, k) for k, v in self.figure5.items()),
            *((v, k) for k, v in self.table3.items()),
            (self.table3_metr_la, "metr-la"),
        ]
        pairs += [(self.pems, "pems"), (self.figure7, "pems")]
        return {spec: PAPER_NAMES[key] for spec, key in pairs}


SCALES: dict[str, Scale] = {
    "small": Scale(
        "small",
        figure5={"pems-bay": "pems-bay:steps=3000", "chickenpox": "chickenpox", "windmill": "windmill:nodes=100,steps=3000"},
        figure5_epochs=8,
        table3={"pems-bay": "pems-bay:steps=12000", "chickenpox": "chickenpox", "windmill": "windmill"},
        table3_epochs=2, table3_max_steps=20, repeats=3,
        pems="pems:nodes=1000,steps=8000", table4_epochs=1, figure7_epochs=1,
        table3_metr_la="metr-la:steps=12000",
        figure7_data="pems:nodes=50,steps=30000", figure7_batch=8,  # 21 steps/rank at P = 128
    ),
    "medium": Scale(
        "medium",
        figure5={"pems-bay": "pems-bay:steps=12000", "chickenpox": "chickenpox", "windmill": "windmill:steps=8000"},
        figure5_epochs=20,
        table3={"pems-bay": "pems-bay", "chickenpox": "chickenpox", "windmill": "windmill"},
        table3_epochs=3, table3_max_steps=100, repeats=3,
        pems="pems:nodes=2000,steps=12000", table4_epochs=2, figure7_epochs=2,
        figure7_data="pems:nodes=500,steps=120000", figure7_batch=32,  # 21 steps/rank at P = 128
    ),
    "full": Scale(
        "full",
        figure5={"pems-bay": "pems-bay", "chickenpox": "chickenpox", "windmill": "windmill"},
        figure5_epochs=100,
        table3={"pems-bay": "pems-bay", "chickenpox": "chickenpox", "windmill": "windmill"},
        table3_epochs=100, table3_max_steps=None, repeats=3,
        pems="pems", table4_epochs=30, figure7_epochs=30,
    ),
}  # fmt: skip
"""``full`` is the paper's setting (100 epochs for PeMS-Bay and Windmill, 30 for PeMS): a cluster's
job. ``small`` runs here in about 23 minutes (measured: 22 min 37 s on 2 cores); Table 3 caps its
training steps so that its datasets can be large enough for the memory difference to show."""


def slug(text: str) -> str:
    """``text`` as a file-name part: runs of other characters than letters, digits, dots -> ``-``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def dataset_label(spec: str) -> str:
    """The label a dataset spec gets in the results rows (raises on a bad spec)."""
    return parse_dataset_spec(spec).label


def epochs_text(n: int) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} epoch" + ("" if n == 1 else "s")


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose status is ``ok``."""
    return df[df["status"] == "ok"]


def outdir(path: str | Path) -> Path:
    """``path`` as a directory, created if missing."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def left_out_note(df: pd.DataFrame) -> list[str]:
    """Markdown lines naming the rows left out of a table (none when every row is ok)."""
    lines = left_out_lines(df)
    return (
        ["", "Left out (status other than ok):", "", *(f"- {ln}" for ln in lines)] if lines else []
    )
