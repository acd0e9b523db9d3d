"""``python -m bench.figures``: the PGT-I paper's figures and tables, at this machine's scale.

    python -m bench.figures --scale small --out plots/paper --results results/paper

runs what each artefact needs, then renders it from the recorded data only:

* Figure 5 (``figure5.png``): validation MAE per epoch, standard vs index, for PeMS-Bay-shaped,
  Chickenpox and Windmill data (``python -m pgti_core.train`` runs; their metrics JSON under
  ``figure5/``);
* Table 3 (``table3.md``): runtime, peak host memory and best validation MAE, mean ± std over
  repeats, standard vs index, on the same three datasets with dcrnn-paper and on METR-LA with
  A3T-GCN as in the artifact (a ``bench.run`` sweep at world size 1; larger series with capped
  training steps at the small scale, so that memory differences show);
* Table 4 (``table4.md``): index vs gpu-index on PeMS-shaped data: runtime, host and device peak
  (gpu-index runs on the CPU when no GPU is present, and the table says so);
* Figure 7 (``figure7.png``): total time vs world size, standard-DDP vs distributed-index, with the
  single-rank/P ideal line; worlds beyond this host are emulated and drawn hollow and dashed.

Everything is resumable: finished sweep points are kept in the CSVs (``bench.run`` resume) and
finished Figure 5 runs in their JSON files, so a re-run only does what is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.cli import names
from bench.report.figure5 import figure5, figure5_path, figure5_run
from bench.report.figure7 import figure7
from bench.report.paper import (
    METR_LA_MODEL,
    MODEL,
    QUALITY,
    SCALES,
    STANDARD_DDP,
    Scale,
    dataset_label,
    epochs_text,
)
from bench.report.tables import table3, table4
from bench.sweep.driver import gpus_here
from bench.sweep.driver import main as run_sweep
from bench.sweep.results import read_results

STAGES = ("figure5", "table3", "table4", "figure7")
TITLES = {
    "figure5": "Figure 5: validation MAE per epoch, standard vs index",
    "table3": "Table 3: runtime, peak host memory, best val MAE",
    "table4": "Table 4: index vs gpu-index",
    "figure7": "Figure 7: total time vs world size",
}


def sweep(csv: Path, argv: Sequence[str], model: str = MODEL) -> pd.DataFrame:
    """Run (or resume) ``python -m bench.run ARGV --models MODEL --out CSV``; all rows of ``csv``."""
    argv = [*argv, "--models", model, "--out", str(csv)]
    rc = run_sweep(argv)
    if rc != 0:
        raise RuntimeError(f"bench.run {' '.join(argv)} exited with {rc}")
    return read_results(csv)


@dataclass
class Context:
    """What every stage needs: the scale, where data and artefacts go, and whether to run.

    Args:
        scale: the run sizes.
        results: directory of this scale's CSVs and run JSONs.
        out: directory of the artefacts.
        run: run what is missing (False: render what is there).
        quiet: no progress lines below the stage lines.
        baseline: the standard-DDP strategy Figure 7 sweeps (``standard`` or ``standard-dask``).
    """

    scale: Scale
    results: Path
    out: Path
    run: bool = True
    quiet: bool = False
    baseline: str = "standard"

    def names(self) -> dict[str, str]:
        """Display name per dataset label: ``PeMS-Bay (pems-bay:steps=3000)``."""
        return {
            dataset_label(spec): f"{name} ({dataset_label(spec)})"
            for spec, name in self.scale.specs().items()
        }

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=sys.stderr, flush=True)

    def rows(
        self,
        name: str,
        datasets: Sequence[str],
        strategies: Sequence[str],
        worlds: Sequence[int],
        epochs: int,
        extra: Sequence[str] = (),
        model: str = MODEL,
    ) -> pd.DataFrame:
        """This stage's rows of ``<results>/<name>.csv``, after running the missing points."""
        csv = self.results / f"{name}.csv"
        argv = ["--gpus", ",".join(map(str, worlds)), "--datasets", ";".join(datasets),
                "--strategies", ",".join(strategies), "--epochs", str(epochs), *extra,
                *(["--quiet"] if self.quiet else [])]  # fmt: skip
        if self.run:
            df = sweep(csv, argv, model)
        elif csv.is_file():
            df = read_results(csv)
        else:
            raise FileNotFoundError(f"{csv}: no results yet; run without --no-run")
        labels = [dataset_label(d) for d in datasets]
        keep = (
            df["dataset"].isin(labels)
            & df["strategy"].isin(strategies)
            & (df["epochs"] == epochs)
            & (df["model"] == model)
        )
        return df[keep.fillna(False).astype(bool)]


def stage_figure5(ctx: Context) -> list[Path]:
    runs_dir, epochs = ctx.results / "figure5", ctx.scale.figure5_epochs
    summaries = []
    for key in QUALITY:
        spec = ctx.scale.figure5[key]
        for strategy in ("standard", "index"):
            path = figure5_path(runs_dir, spec, strategy, epochs)
            if not (ctx.run or path.is_file()):
                raise FileNotFoundError(f"{path}: no such run yet; run without --no-run")
            t0 = time.perf_counter()
            summaries.append(figure5_run(spec, strategy, epochs, runs_dir))
            best = min(e["val"]["mae"] for e in summaries[-1]["epochs"])
            ctx.say(f"  {spec} {strategy}, {epochs} epochs: best val MAE {best:.4f} "
                    f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return figure5(summaries, ctx.out, ctx.names())


def stage_table3(ctx: Context) -> list[Path]:
    sc = ctx.scale
    cap = ["--max-steps", str(sc.table3_max_steps)] if sc.table3_max_steps else []
    args = (["standard", "index"], [1], sc.table3_epochs, ["--repeats", str(sc.repeats), *cap])
    df = pd.concat([ctx.rows("table3", [sc.table3[k] for k in QUALITY], *args),
                    ctx.rows("table3", [sc.table3_metr_la], *args, model=METR_LA_MODEL)])  # fmt: skip
    steps = f", at most {sc.table3_max_steps} training steps each" if cap else ""
    setting = (
        f"{sc.name} scale: {MODEL} ({METR_LA_MODEL} on METR-LA, as in the artifact), "
        f"{epochs_text(sc.table3_epochs)}{steps}, {sc.repeats} repeats."
    )
    return table3(df, ctx.out, ctx.names(), setting)


def stage_table4(ctx: Context) -> list[Path]:
    sc = ctx.scale
    df = ctx.rows("table4", [sc.pems], ["index", "gpu-index"], [1], sc.table4_epochs,
                  ["--repeats", str(sc.repeats)])  # fmt: skip
    setting = f"{sc.name} scale: {MODEL}, {epochs_text(sc.table4_epochs)}, {sc.repeats} repeats."
    return table4(df, ctx.out, ctx.names(), setting)


def stage_figure7(ctx: Context) -> list[Path]:
    gpus = gpus_here()
    # Without GPUs, CPU ranks beyond the cores only time-share them: emulate instead.
    extra = [] if gpus else ["--max-local-ranks", str(len(os.sched_getaffinity(0)))]
    strategies = [ctx.baseline, "gpu-index" if gpus else "index"]
    df = ctx.rows("figure7", [ctx.scale.pems], strategies, ctx.scale.figure7_worlds,
                  ctx.scale.figure7_epochs, extra)  # fmt: skip
    name = ctx.names()[dataset_label(ctx.scale.pems)]
    return figure7(
        df,
        ctx.out,
        f"Figure 7: total time vs GPUs, {name}, {epochs_text(ctx.scale.figure7_epochs)}",
    )


STAGE_FUNCS: dict[str, Callable[[Context], list[Path]]] = {
    "figure5": stage_figure5,
    "table3": stage_table3,
    "table4": stage_table4,
    "figure7": stage_figure7,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--scale", choices=list(SCALES), default="small",
                   help="run sizes: small runs here in about 10 minutes, full is the paper's "
                        "(default: %(default)s)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("plots/paper"),
                   help="directory of the figures and tables (default: %(default)s)")  # fmt: skip
    p.add_argument("--results", type=Path, default=Path("results/paper"),
                   help="directory of the sweep CSVs and run JSONs, one subdirectory per scale, "
                        "reused on re-runs (default: %(default)s)")  # fmt: skip
    p.add_argument("--only", type=names(STAGES), default=list(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)} (default: all)")  # fmt: skip
    p.add_argument("--baseline", choices=STANDARD_DDP[::-1], default="standard",
                   help="Figure 7's standard-DDP strategy; standard-dask is the paper's Dask-backed "
                        "one (default: %(default)s)")  # fmt: skip
    p.add_argument("--no-run", action="store_true",
                   help="render from the data already under --results; run nothing")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="only the per-stage lines")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, path in (("--out", args.out), ("--results", args.results)):
        if path.exists() and not path.is_dir():
            parser.error(f"{flag}: {path} is not a directory")
    results = args.results / args.scale
    ctx = Context(SCALES[args.scale], results, args.out, run=not args.no_run, quiet=args.quiet,
                  baseline=args.baseline)  # fmt: skip
    t_all, failed = time.perf_counter(), []
    for i, name in enumerate(args.only, 1):
        head = f"[{i}/{len(args.only)}] {TITLES[name]}"
        ctx.say(f"{head}: {'rendering' if args.no_run else 'running'} ({args.scale} scale)")
        t0 = time.perf_counter()
        try:
            files = STAGE_FUNCS[name](ctx)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            failed.append(name)
            print(f"{head}: FAILED - {exc}", file=sys.stderr, flush=True)
            continue
        shown = ", ".join(str(f) for f in files if f.suffix != ".svg")
        print(
            f"{head}: done in {time.perf_counter() - t0:.0f} s -> {shown}",
            file=sys.stderr,
            flush=True,
        )
    print(f"all stages: {time.perf_counter() - t_all:.0f} s; data under {results}, artefacts under "
          f"{args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
