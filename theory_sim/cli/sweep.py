"""``theory-sim sweep`` (many runs, one table, resumable) and ``theory-sim plot-sweep``."""

from __future__ import annotations

import errno
import io
import sys
from pathlib import Path

from .. import sweep as sw
from ..io import atomic_write
from ..status import OUTCOMES
from . import EXIT_FAILED, EXIT_WRITE_FAILED, InUse, UsageError, WriteFailed, signals, warn
from .output import refuse_dangling, shown
from .progress import ProgressBar

_VECTOR_HELP = {"alpha": "feature strengths, comma-separated (default 6,3)",
                "pi": "feature probabilities, comma-separated (default uniform)"}


_EXTRA_HELP = {
    "max_flow_time": "cap on the flow time eta*steps when --steps is not given (default: 2e5 for "
                     "the population engine, i.e. 2e7 steps at eta=1e-2; 1e9 x max(1, d/512)^2 for "
                     "--engine flow; a population sweep usually wants less, e.g. 5e3: runs stopped "
                     "by the cap are outcome 'incomplete')",
    "head": "the prediction head: offdiag (the paper), frozen (E = I), full",
    "features": "basis or random orthonormal features",
    "split": "view split: bernoulli (each patch w.p. 1/2) or half",
    "engine": "the engine: one of those the batched kernel runs (ensemble.BATCHED_ENGINES; "
              "default population)",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _usage_error(exc: sw.SweepError) -> UsageError:
    """The library names the parameter at fault; the command line adds its flag."""
    if exc.param and exc.param != "executor":
        return UsageError(f"{exc} (option {_flag(exc.param)})")
    return UsageError(str(exc))


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of (parameters, seed) runs of the population or flow engine "
                      "into one table",
        description="Run every (grid point, seed) with the batched kernel of the chosen engine "
                    "(--engine, or a grid over engine: " + ", ".join(sw.batched_engines()) + ") on "
                    "Dask (a local cluster by default) and write one row per run to OUT/runs.csv, "
                    "with OUT/manifest.json. Rerunning the same command on the same --out runs "
                    "only the missing rows; a second sweep on an --out in use is refused (exit 75).",
        epilog="Grid keys: " + ", ".join(k for k in sw.KEYS) + ", alpha1, alpha2, ..., pi1, ... "
               "Values: V1,V2,... or lin:START:STOP:N or log:START:STOP:N. "
               "Example: theory-sim sweep --grid alpha1=4,5,6,7,8 "
               "--grid eta_E_ratio=log:0.01:1:5 --seeds 32 --d 512 --eta 1e-2 "
               "--max-flow-time 5e3 --out sweeps/NAME")
    g = p.add_argument_group("the grid")
    g.add_argument("--grid", action="append", default=[], metavar="KEY=VALUES",
                   help="a swept key and its values (repeat for more keys; later keys vary fastest)")
    g.add_argument("--config", default=None, metavar="FILE.toml",
                   help="TOML file with seeds = ..., [base] and [grid] (the command line wins)")
    g.add_argument("--seeds", default=None, metavar="N|A:B|S1,S2",
                   help="seeds of W(0): a count N (0..N-1), a range A:B or a list "
                        "(default: the single seed 1)")
    b = p.add_argument_group("fixed values (defaults: those of theory-sim run)")
    for name in sw.VECTOR_KEYS:
        b.add_argument(_flag(name), dest=f"base_{name}", default=None, metavar="V1,V2",
                       help=_VECTOR_HELP[name])
    for key in sw.KEYS.values():
        metavar = "NAME" if key.name == "engine" else "|".join(key.choices) if key.choices \
            else key.kind.__name__.upper()
        b.add_argument(_flag(key.name), dest=f"base_{key.name}", default=None, metavar=metavar,
                       help=_EXTRA_HELP.get(key.name, key.help))
    e = p.add_argument_group("execution")
    e.add_argument("--out", required=True, help="sweep directory (created, or resumed)")
    e.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="submit to this Dask cluster (default: start a local one)")
    e.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local cluster: worker processes (default: one per core)")
    e.add_argument("--threads-per-worker", type=int, default=None, metavar="N",
                   help="local cluster: threads per worker (default 1)")
    e.add_argument("--serial", action="store_true",
                   help="no Dask: run in this process (the kernel still uses every core)")
    e.add_argument("--chunk-size", type=int, default=None, metavar="N",
                   help="runs per task (default: about 32 tasks per thread, at most 16 runs)")
    e.add_argument("--max-chunks", type=int, default=None, metavar="N",
                   help="stop after this many chunks; rerun to do the rest")
    e.add_argument("--plot", action="store_true", help=f"also draw OUT/{sw.PLOT}")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    q = sub.add_parser("plot-sweep", help="draw the phase diagram of a sweep directory",
                       description="Draw the fractions of outcomes (diverse, collapsed, "
                                   "incomplete, vanishing) over the grid of a sweep.")
    q.add_argument("dir", help="the sweep directory (its --out)")
    q.add_argument("--x", default=None, help="key on the x axis (default: the first grid key)")
    q.add_argument("--y", default=None, help="key on the y axis (default: the second grid key)")
    q.add_argument("--out", default=None, help=f"image file (default DIR/{sw.PLOT})")
    q.set_defaults(func=cmd_plot_sweep)


def spec_from_args(args) -> sw.SweepSpec:
    config = sw.read_config(args.config) if args.config else None
    base = {}
    for name in (*sw.VECTOR_KEYS, *sw.KEYS):
        value = getattr(args, f"base_{name}")
        if value is not None:
            base[name] = value
    grid = [sw.parse_grid_arg(text) for text in args.grid]
    return sw.build_spec(base=base, grid=grid, seeds=args.seeds, config=config)


def cmd_sweep(args) -> int:
    received = None  # the signal that stopped the sweep, once term_as_interrupt is entered
    try:
        spec = spec_from_args(args)
        from .doctor import cache_problem

        problem = cache_problem()
        if problem:
            warn(problem)
        bar = ProgressBar("sweep", enabled=not args.quiet)

        last = [-1]

        def progress(done, total):
            if done != last[0]:
                last[0] = done
                bar(done, total, f"{done}/{total} runs", final=done >= total)

        with signals.term_as_interrupt() as received:
            result = sw.run_sweep(
                spec, args.out, executor="serial" if args.serial else "dask",
                scheduler=args.scheduler, workers=args.workers,
                threads_per_worker=args.threads_per_worker, chunk_size=args.chunk_size,
                max_chunks=args.max_chunks, progress=progress,
                command=_command_line())
    except sw.SweepInUse as exc:
        raise InUse(str(exc)) from None
    except sw.SweepError as exc:
        raise _usage_error(exc) from None
    except sw.SweepFailed as exc:
        print(f"theory-sim: error: {shown(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # the table or manifest could not be written (disk full, ...)
        print(f"theory-sim: error: cannot write to {shown(args.out)} ({exc.strerror or exc}); "
              f"the rows written before are kept in {shown(args.out)}/{sw.TABLE}: rerun the same "
              f"command once there is room", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt as exc:
        print(f"theory-sim: interrupted; the finished runs are in {shown(args.out)}/{sw.TABLE}, "
              f"rerun the same command to continue", file=sys.stderr)
        return received.exit_status if received is not None else signals.interrupt_status(exc)
    out = Path(result.out)
    for note in result.notes:
        warn(shown(note) + "; the table is rewritten without them")
    print(f"theory-sim sweep: {result.n_done} of {result.n_runs} runs in {shown(out / sw.TABLE)} "
          f"({result.n_new} new, {result.elapsed:.1f} s)")
    if result.complete:
        print(_outcome_summary(out / sw.TABLE))
    else:
        print(f"theory-sim sweep: stopped early; rerun the same command to run the "
              f"{result.n_runs - result.n_done} missing runs")
    if args.plot and result.n_done:
        path = _save_figure(plot_sweep(out), out / sw.PLOT)
        print(f"phase diagram: {shown(path)}")
    return 0


def _command_line():
    """The command as typed, when this process is the ``theory-sim`` program."""
    if sys.argv and Path(sys.argv[0]).name in ("theory-sim", "__main__.py"):
        return ["theory-sim", *sys.argv[1:]]
    return None


def plot_sweep(directory, *, x=None, y=None, notes: list | None = None):
    """The phase diagram (a matplotlib Figure) of a sweep directory."""
    from .. import plotting

    manifest, table = sw.load_sweep(directory, notes)
    if not len(table.get("run_id", ())):
        raise sw.SweepError(f"{Path(directory) / sw.TABLE} has no rows yet (no run has finished): "
                            f"nothing to plot")
    x, y, note = plotting.sweep_axes(manifest, table, x, y)
    return plotting.phase_diagram(table, x, y, note=note)


def _save_figure(fig, path) -> Path:
    """Save ``fig`` as PNG atomically (temp file, fsync, rename); a one-line error if it cannot."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    try:
        with atomic_write(Path(path), "wb") as fh:
            fh.write(buf.getvalue())
    except OSError as exc:
        message = f"cannot write the image {path} ({exc.strerror or exc})"
        if exc.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
            raise WriteFailed(message) from None  # a full or failing disk: exit 1, not bad input
        raise UsageError(message) from None
    return Path(path)


def _outcome_summary(path) -> str:
    _, rows = sw.read_table(path)
    counts = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    return "outcomes: " + ", ".join(f"{k} {counts.get(k, 0)}"
                                    for k in OUTCOMES)


def _image_target(target: Path, typed: str) -> Path:
    """Where the image goes: through a link to the file it names (the link stays a link);
    never over something that is not a regular file (the atomic rename would replace a device
    such as /dev/null, or a directory's entry, with the image)."""
    if target.is_symlink() and target.exists():
        target = target.resolve()
    if target.exists() and not target.is_file():
        kind = "a directory" if target.is_dir() else "not a regular file"
        raise UsageError(f"--out {typed} is {kind}; name an image file, e.g. --out phase.png")
    return target


def cmd_plot_sweep(args) -> int:
    try:
        if args.out:
            target = sw.checked_path(args.out, "out", param="out")
            refuse_dangling(target, "--out", args.out)
        else:
            target = sw.checked_path(args.dir, "sweep directory") / sw.PLOT
        target = _image_target(target, args.out or str(target))
        notes = []
        fig = plot_sweep(args.dir, x=args.x, y=args.y, notes=notes)
        for note in notes:
            warn(shown(note))
        if not target.parent.is_dir():
            raise UsageError(f"--out {target}: directory {target.parent} does not exist")
        path = _save_figure(fig, target)
    except sw.SweepError as exc:
        raise _usage_error(exc) from None
    print(f"phase diagram: {shown(path)}")
    return 0
