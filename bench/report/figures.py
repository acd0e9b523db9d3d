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
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from bench.cli import ArgumentParser, check_output_dir, names
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
from pgti_core.data.datasets import parse_dataset_spec
from pgti_core.progress import progress, set_quiet

STAGES = ("figure5", "table3", "table4", "figure7")
TITLES = {
    "figure5": "Figure 5: validation MAE per epoch, standard vs index",
    "table3": "Table 3: runtime, peak host memory, best val MAE",
    "table4": "Table 4: index vs gpu-index",
    "figure7": "Figure 7: total time vs world size",
}


def sweep(csv: Path, argv: Sequence[str], model: str = MODEL) -> pd.DataFrame:
    """Run (or resume) ``python -m bench.run ARGV --models MODEL --out CSV``; all rows of ``csv``."""
    argv = [*argv, "--models", model, "--out", str(csv), "--no-plots"]
    rc = run_sweep(argv)
    if rc != 0:
        raise RuntimeError(f"bench.run {' '.join(argv)} exited with {rc}")
    return read_results(csv)


@dataclass(frozen=True)
class Query:
    """One stage's sweep: what ``bench.run`` runs into ``<results>/<csv>.csv``, and its rows there.

    Args:
        csv: the CSV's stem (the stage's name).
        datasets: dataset specs.
        strategies: strategy names.
        worlds: world sizes.
        epochs: epochs per point.
        extra: further ``bench.run`` arguments (repeats, step cap, local-rank cap).
        model: the model swept (default :data:`MODEL`).
    """

    csv: str
    datasets: tuple[str, ...]
    strategies: tuple[str, ...]
    worlds: tuple[int, ...]
    epochs: int
    extra: tuple[str, ...] = ()
    model: str = MODEL

    def argv(self, quiet: bool) -> list[str]:
        """The ``bench.run`` arguments (without ``--models`` and ``--out``)."""
        return ["--gpus", ",".join(map(str, self.worlds)), "--datasets", ";".join(self.datasets),
                "--strategies", ",".join(self.strategies), "--epochs", str(self.epochs),
                *self.extra, *(["--quiet"] if quiet else [])]  # fmt: skip

    def select(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``df`` this query asks for (any status)."""
        labels = [dataset_label(d) for d in self.datasets]
        keep = (
            df["dataset"].isin(labels)
            & df["strategy"].isin(self.strategies)
            & (df["epochs"] == self.epochs)
            & (df["model"] == self.model)
        )
        return df[keep.fillna(False).astype(bool)]


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
        tally: per stage, ``(re-used, measured now, where)``, filled in as the stages run.
    """

    scale: Scale
    results: Path
    out: Path
    run: bool = True
    quiet: bool = False
    baseline: str = "standard"
    tally: dict[str, tuple[int, int, Path]] = field(default_factory=dict)

    def names(self) -> dict[str, str]:
        """Display name per dataset label, saying whether the series is the paper's data or a
        synthetic one of its shape: ``synthetic PeMS-Bay-shaped (pems-bay:steps=3000, 325 × 3000)``."""
        out = {}
        for spec, name in self.scale.specs().items():
            ds = parse_dataset_spec(spec)
            size = f"{ds.nodes} nodes × {ds.steps} steps"
            out[ds.label] = (f"{name} ({ds.label}, {size})" if ds.is_file
                             else f"synthetic {name}-shaped ({ds.label}, {size})")  # fmt: skip
        return out

    def say(self, line: str) -> None:
        if not self.quiet:
            tqdm.write(line, file=sys.stderr)

    def existing(self, query: Query) -> pd.DataFrame:
        """The rows of ``query`` already in its CSV (none when there is no CSV yet)."""
        csv = self.results / f"{query.csv}.csv"
        return query.select(read_results(csv)) if csv.is_file() else pd.DataFrame()

    def rows(self, query: Query) -> pd.DataFrame:
        """The rows of ``query`` in its CSV, after running the missing points; adds them to the
        tally of its CSV's stage (Table 3 has two queries)."""
        csv = self.results / f"{query.csv}.csv"
        before = len(self.existing(query))
        if self.run:
            df = sweep(csv, query.argv(self.quiet), query.model)
        elif csv.is_file():
            df = read_results(csv)
        else:
            raise FileNotFoundError(f"{csv}: no results yet; run without --no-run")
        df = query.select(df)
        reused, measured, _ = self.tally.get(query.csv, (0, 0, csv))  # a stage's queries add up
        self.tally[query.csv] = (reused + before, measured + len(df) - before, csv)
        return df


def figure5_runs(ctx: Context) -> list[tuple[str, str, Path]]:
    """``(spec, strategy, metrics JSON)`` of every Figure 5 run."""
    runs_dir, epochs = ctx.results / "figure5", ctx.scale.figure5_epochs
    return [(ctx.scale.figure5[key], strategy,
             figure5_path(runs_dir, ctx.scale.figure5[key], strategy, epochs))
            for key in QUALITY for strategy in ("standard", "index")]  # fmt: skip


def table3_query(ctx: Context) -> Query:
    sc = ctx.scale
    cap = ("--max-steps", str(sc.table3_max_steps)) if sc.table3_max_steps else ()
    return Query("table3", tuple(sc.table3[k] for k in QUALITY), ("standard", "index"), (1,),
                 sc.table3_epochs, ("--repeats", str(sc.repeats), *cap))  # fmt: skip


def table3_metr_la_query(ctx: Context) -> Query:
    """Table 3's METR-LA row: A3T-GCN, as in the artifact, at the other rows' settings."""
    q = table3_query(ctx)
    return Query(q.csv, (ctx.scale.table3_metr_la,), q.strategies, q.worlds, q.epochs, q.extra,
                 METR_LA_MODEL)  # fmt: skip


def table4_query(ctx: Context) -> Query:
    sc = ctx.scale
    return Query("table4", (sc.pems,), ("index", "gpu-index"), (1,), sc.table4_epochs,
                 ("--repeats", str(sc.repeats)))  # fmt: skip


def figure7_query(ctx: Context) -> Query:
    sc = ctx.scale
    # points whose ranks do not fit this host's cores or GPUs are emulated by bench.run
    extra = ("--repeats", str(sc.repeats))
    extra += ("--batch-size", str(sc.figure7_batch)) if sc.figure7_batch else ()
    strategies = (ctx.baseline, "gpu-index" if gpus_here() else "index")
    return Query("figure7", (sc.figure7,), strategies, tuple(sc.figure7_worlds),
                 sc.figure7_epochs, extra)  # fmt: skip


QUERIES: dict[str, Callable[[Context], Query]] = {
    "table3": table3_query,
    "table4": table4_query,
    "figure7": figure7_query,
}


def stage_figure5(ctx: Context) -> list[Path]:
    runs = figure5_runs(ctx)
    epochs, summaries, reused = ctx.scale.figure5_epochs, [], 0
    bar = progress(runs, quiet=ctx.quiet, unit="run", desc="figure5")
    for spec, strategy, path in bar:
        if not (ctx.run or path.is_file()):
            raise FileNotFoundError(f"{path}: no such run yet; run without --no-run")
        reused += path.is_file()
        t0 = time.perf_counter()
        summaries.append(figure5_run(spec, strategy, epochs, path.parent))
        best = min(e["val"]["mae"] for e in summaries[-1]["epochs"])
        ctx.say(f"  {spec} {strategy}, {epochs} epochs: best val MAE {best:.4f} "
                f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    ctx.tally["figure5"] = (reused, len(runs) - reused, ctx.results / "figure5")
    return figure5(summaries, ctx.out, ctx.names())


def stage_table3(ctx: Context) -> list[Path]:
    sc = ctx.scale
    df = pd.concat([ctx.rows(table3_query(ctx)), ctx.rows(table3_metr_la_query(ctx))])
    steps = f", at most {sc.table3_max_steps} training steps each" if sc.table3_max_steps else ""
    setting = (
        f"{sc.name} scale: {MODEL} ({METR_LA_MODEL} on METR-LA, as in the artifact), "
        f"{epochs_text(sc.table3_epochs)}{steps}, {sc.repeats} repeats."
    )
    return table3(df, ctx.out, ctx.names(), setting)


def stage_table4(ctx: Context) -> list[Path]:
    sc = ctx.scale
    df = ctx.rows(table4_query(ctx))
    setting = f"{sc.name} scale: {MODEL}, {epochs_text(sc.table4_epochs)}, {sc.repeats} repeats."
    return table4(df, ctx.out, ctx.names(), setting)


def stage_figure7(ctx: Context) -> list[Path]:
    df = ctx.rows(figure7_query(ctx))
    name = ctx.names()[dataset_label(ctx.scale.figure7)]
    return figure7(
        df,
        ctx.out,
        f"Figure 7: total time vs world size, {name}, {epochs_text(ctx.scale.figure7_epochs)}",
    )


def on_disk(ctx: Context, stages: Sequence[str]) -> list[str]:
    """What ``ctx.results`` already holds for ``stages``: one phrase per stage with data, and one
    on when and at which commit those rows were measured."""
    found, stamps, shas = [], [], set()
    for name in stages:
        if name == "figure5":
            have = sum(path.is_file() for *_, path in figure5_runs(ctx))
            if have:
                found.append(f"figure5: {have} of {len(figure5_runs(ctx))} runs")
            continue
        df = ctx.existing(QUERIES[name](ctx))
        if len(df):
            found.append(f"{name}: {len(df)} rows")
            stamps += [s for s in df["timestamp_utc"].dropna().astype(str) if s]
            shas |= {s[:7] for s in df["git_sha"].dropna().astype(str) if s}
    if found and stamps:
        when = sorted(stamps)
        found.append(f"rows measured {when[0][:10]} to {when[-1][:10]}"
                     + (f" at git {', '.join(sorted(shas))}" if shas else ""))  # fmt: skip
    return found


def first_line(ctx: Context, stages: Sequence[str]) -> str:
    """The command's first line: whether it measures, re-uses what is on disk, or only renders."""
    found = on_disk(ctx, stages)
    what = f"{', '.join(stages)} at the {ctx.scale.name} scale"
    if not ctx.run:
        return f"bench.figures: rendering {what} from {ctx.results} only (--no-run): " + (
            "; ".join(found) or "nothing there"
        )
    if not found:
        return f"bench.figures: measuring {what} into {ctx.results} (empty: everything is measured)"
    return (f"bench.figures: RE-USING what {ctx.results} already holds ({'; '.join(found)}) and "
            f"measuring only what is missing for {what}; pass an empty --results directory to "
            "measure everything anew")  # fmt: skip


def tally_text(tally: tuple[int, int, Path] | None) -> str:
    """``18 rows: 12 re-used from X, 6 measured now``."""
    if tally is None:
        return ""
    reused, measured, where = tally
    unit = "runs" if where.suffix != ".csv" else "rows"
    return f"{reused + measured} {unit}: {reused} re-used from {where}, {measured} measured now; "


STAGE_FUNCS: dict[str, Callable[[Context], list[Path]]] = {
    "figure5": stage_figure5,
    "table3": stage_table3,
    "table4": stage_table4,
    "figure7": stage_figure7,
}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m bench.figures", description=__doc__)
    p.add_argument("--scale", choices=list(SCALES), default="small",
                   help="run sizes: small runs here in about 23 minutes, full is the paper's "
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
        try:
            check_output_dir(path)
        except ValueError as exc:
            parser.error(f"{flag}: {exc}")
    results = args.results / args.scale
    ctx = Context(SCALES[args.scale], results, args.out, run=not args.no_run, quiet=args.quiet,
                  baseline=args.baseline)  # fmt: skip
    if args.quiet:
        set_quiet()
    print(first_line(ctx, args.only), file=sys.stderr, flush=True)
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
            f"{head}: done in {time.perf_counter() - t0:.0f} s; {tally_text(ctx.tally.get(name))}"
            f"-> {shown}",
            file=sys.stderr,
            flush=True,
        )
    print(f"all stages: {time.perf_counter() - t_all:.0f} s; data under {results}, artefacts under "
          f"{args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
