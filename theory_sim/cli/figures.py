"""``theory-sim figures``: regenerate every theoretical figure from scratch, simulations included.

Each figure ``figN_*.png`` comes with the small data file it was drawn from
(``figN_*.npz`` or ``.json``), and ``figures.json`` records the parameters, the
measured numbers quoted in ``docs/figures.md`` and the wall time. Every file is
written atomically; the simulations use fixed seeds, so a rerun gives the same
numbers. ``--quick`` uses smaller grids and fewer seeds through the same code.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from .. import experiments, plotting
from ..experiments import FIGURES, FULL, QUICK, Plan
from ..io import atomic_write, write_json
from . import UsageError, warn
from .output import refuse_dangling, shown
from .progress import ProgressBar
from .signals import GracefulStop


def add_parser(sub) -> None:
    p = sub.add_parser("figures", help="regenerate every figure (simulations included)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--out", default="figures", help="output directory (default figures/)")
    p.add_argument("--force", action="store_true",
                   help="write into an existing non-empty --out: replace the figures made, keep the "
                        "others (and their numbers in the facts file)")
    p.add_argument("--quick", action="store_true",
                   help="smaller grids and fewer seeds, same code paths (about a minute)")
    p.add_argument("--only", default=None,
                   help="comma-separated figure numbers to make, e.g. 1,4 (default: all)")
    p.add_argument("--jobs", type=int, default=None,
                   help="accepted for compatibility; no effect (the flow runs of figs 4, 5 and 8 go "
                        "through a pool of min(cores, 4) threads)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_figures)


def _numbers() -> str:
    return ", ".join(map(str, sorted(FIGURES)))


def parse_only(text: str | None) -> list[int]:
    if text is None:
        return sorted(FIGURES)
    try:
        nums = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UsageError(f"--only takes figure numbers {_numbers()} separated by commas "
                         f"(got {text!r})") from None
    bad = [n for n in nums if n not in FIGURES]
    if bad or not nums:
        raise UsageError(f"--only takes figure numbers {_numbers()} separated by commas (got {text!r})")
    return nums


# ---------------------------------------------------------------- progress

HEARTBEAT_SECONDS = 30.0
"""While a figure reports no progress (e.g. compiling its kernels on first use), the bar is
redrawn, with the time spent in the figure, this often."""


class Progress:
    """One bar over the whole command: ``units`` of work (``experiments.cost``), advanced by
    each simulation through :meth:`add`, the experiments' ``progress`` callback. The text
    after the bar shows the progress inside the current figure as well: the units are rough
    (fig. 9 is a few units but minutes of runs), so the whole bar alone can sit still."""

    def __init__(self, total: float, enabled: bool, heartbeat: float | None = None):
        import threading

        self.bar = ProgressBar("figures", enabled=enabled)
        self.total = total
        self.done = 0.0
        self.text = ""
        self.stage_total = 0.0
        self.stage_done = 0.0
        self.stage_t0 = time.perf_counter()
        self._stage_decile = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        beat = HEARTBEAT_SECONDS if heartbeat is None else heartbeat
        if enabled:  # a first compile inside a figure reports nothing for minutes: say it is alive
            threading.Thread(target=self._beat, args=(beat,), daemon=True,
                             name="theory-sim-figures-heartbeat").start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if self.text:
                self._draw(force=True)

    def close(self) -> None:
        self._stop.set()

    def _draw(self, force: bool = False):
        with self._lock:
            self._draw_locked(force)

    def _draw_locked(self, force: bool = False):
        frac = 0.0 if self.total <= 0 else min(1.0, self.done / self.total)
        text = self.text
        if self.stage_total > 0:
            inner = min(1.0, self.stage_done / self.stage_total)
            text += (f" {100 * inner:.0f} % of this figure, "
                     f"{time.perf_counter() - self.stage_t0:.0f} s in it")
            decile = int(inner * 10)
            force = force or decile > self._stage_decile
            self._stage_decile = max(decile, self._stage_decile)
        self.bar.draw(frac, f"{100 * frac:5.1f}%", text, force=force)

    def stage(self, text: str, units: float = 0.0):
        self.text = text
        self.stage_total, self.stage_done = float(units), 0.0
        self.stage_t0 = time.perf_counter()
        self._stage_decile = -1
        self._draw(force=True)

    def add(self, units: float):
        self.done += units
        self.stage_done += units
        self._draw()

    def finish(self):
        self.close()
        with self._lock:
            self.bar(int(self.total), int(self.total), "done", final=True)


# ---------------------------------------------------------------- writing

def save_png(fig, path: Path) -> None:
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png", dpi=plotting.STYLE["savefig.dpi"])


def save_npz(data: dict, path: Path) -> None:
    with atomic_write(path) as fh:
        np.savez_compressed(fh, **{k: np.asarray(v) for k, v in data.items()})


def make_figures(out: Path, plan: Plan, nums, progress: Progress, should_stop=None) -> tuple[dict, list]:
    """Simulate, draw and write the figures ``nums``; return the facts (also in
    figures.json) and the figures made: all of ``nums`` unless ``should_stop()``
    turned true, which is checked between figures."""
    out.mkdir(parents=True, exist_ok=True)
    facts: dict = {"plan": dataclasses.asdict(plan), "figures": {}, "seconds": {}}
    cache: dict = {}  # figs 1-3 share their runs
    done = []
    for num in nums:
        if should_stop is not None and should_stop():
            break
        t0 = time.perf_counter()
        name = FIGURES[num]
        progress.stage(name, experiments.cost(plan, num))
        fig, data, f = experiments.make_figure(num, plan, progress.add, cache)
        save_png(fig, out / f"{name}.png")
        if experiments.MODULES[num].DATA_FORMAT == "json":
            write_json(out / f"{name}.json", data)
        else:
            save_npz(data, out / f"{name}.npz")
        facts["figures"][name] = f
        facts["seconds"][name] = round(time.perf_counter() - t0, 2)
        done.append(num)
    return facts, done


def merge_facts(path: Path, facts: dict, nums, wall: float, *, quick: bool,
                interrupted: bool = False) -> dict:
    """The new facts; with ``--only`` merged into the facts file already there, so that
    regenerating one figure keeps the others' numbers (``wall_seconds`` is that of the
    last run that made every figure; a partial run is recorded as ``last_partial_run``)."""
    facts = {**facts, "quick": quick}
    if len(nums) == len(FIGURES) and not interrupted:
        return {**facts, "wall_seconds": wall}
    import json

    old: dict = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
    if old.get("plan") != json.loads(json.dumps(facts["plan"])):  # tuples are lists in JSON
        old = {}
    merged = {**old, **{k: v for k, v in facts.items() if k not in ("figures", "seconds")}}
    merged["figures"] = {**old.get("figures", {}), **facts["figures"]}
    merged["seconds"] = {**old.get("seconds", {}), **facts["seconds"]}
    merged["last_partial_run"] = {"figures": [FIGURES[n] for n in nums], "wall_seconds": wall,
                                  "interrupted": interrupted}
    return merged


def cmd_figures(args) -> int:
    nums = parse_only(args.only)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be an integer >= 1 (got {args.jobs})")
    plan = QUICK if args.quick else FULL
    out = Path(args.out)
    refuse_dangling(out, "--out", args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(f"--out {out} already exists and is not empty; choose another --out "
                         f"or pass --force to replace the figures it makes")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable ({exc.strerror or exc})") from None
    from .doctor import cache_problem

    problem = cache_problem()
    if problem:
        warn(problem)
    progress = Progress(sum(experiments.cost(plan, n) for n in nums), enabled=not args.quiet)
    t0 = time.perf_counter()
    with GracefulStop() as stop:  # Ctrl-C / SIGTERM: finish the current figure, then stop
        try:
            facts, done = make_figures(out, plan, nums, progress, should_stop=stop)
        finally:
            progress.close()  # its heartbeat
        wall = round(time.perf_counter() - t0, 2)
        interrupted = len(done) < len(nums)
        facts_path = out / ("figures-quick.json" if args.quick else "figures.json")
        write_json(facts_path, merge_facts(facts_path, facts, done, wall, quick=bool(args.quick),
                                           interrupted=interrupted))
    progress.finish()
    names = ", ".join(f"{FIGURES[n]}.png" for n in done) or "nothing"
    print(f"theory-sim figures: wrote {names} (+ data files) to {shown(out)}/ in {wall:.1f} s")
    sys.stdout.flush()
    if interrupted:
        print(f"theory-sim: interrupted ({stop.requested}) after {len(done)} of {len(nums)} figures; "
              f"{facts_path.name} marks the run as partial", file=sys.stderr)
        return stop.exit_status
    return 0
