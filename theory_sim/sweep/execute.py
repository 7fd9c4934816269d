"""Running a sweep: the missing rows of a spec, in this process or on Dask distributed
(each task a chunk of runs of one shape, advanced by the batched kernel on a worker)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._version import __version__
from ..io import dangling_link, lock_dir, unlock_dir
from ..params import ModelParams, TrainParams
from .spec import Cell, SweepError, SweepInUse, SweepSpec, expand, run_id
from .table import Store, checked_path, make_row

MAX_LOCAL_WORKERS = 1024
"""Most worker processes (and threads per worker) of a local cluster: checked before it starts."""
SERIAL_CHUNK = 256
"""Runs per kernel call of the serial executor (unless ``chunk_size`` says otherwise)."""
CONNECT_TIMEOUT = "10s"
"""How long to try to reach ``scheduler`` before giving up."""


class SweepFailed(RuntimeError):
    """A task failed (e.g. a worker was killed too often); the finished rows are saved."""


ProgressFn = Callable[[int, int], None]


def _payload(cells: list[Cell]) -> list:
    return [(c.index, c.cell, c.model.to_dict(), c.train.to_dict(), c.head_tol, c.eta_E_ratio)
            for c in cells]


def run_chunk(payload: list, cols: list[str], *, parallel: bool = False) -> tuple[str, list]:
    """Run one chunk of cells (a Dask task); return ``(version, [(index, row), ...])``."""
    from ..ensemble import simulate_many

    models, trains, tols, idx = [], [], [], []
    for index, cell, model_d, train_d, head_tol, ratio in payload:
        model_d = dict(model_d, alpha=tuple(model_d["alpha"]), pi=tuple(model_d["pi"]))
        models.append(ModelParams(**model_d))
        trains.append(TrainParams(**train_d))
        tols.append(head_tol)
        idx.append((index, cell, ratio))
    results = simulate_many(models, trains, head_tol=tols, parallel=parallel)
    rows = []
    for (index, ci, ratio), model, train, htol, res in zip(idx, models, trains, tols, results,
                                                           strict=True):
        if res["status"] == "interrupted":
            continue
        cell = Cell(index, ci, {}, model, train, htol, run_id(model, train, htol), ratio)
        rows.append((index, make_row(cell, res, cols)))
    return __version__, rows


def _chunks(cells: list[Cell], size: int) -> list[list[Cell]]:
    """Chunks of at most ``size`` runs, each of one shape (one kernel batch)."""
    groups: dict = {}
    for c in cells:
        groups.setdefault((c.model.m, c.model.L, min(c.model.d, c.model.m + c.model.L)), []).append(c)
    out = []
    for g in groups.values():
        out += [g[i:i + size] for i in range(0, len(g), size)]
    return out


@dataclass
class SweepResult:
    out: Path
    n_runs: int
    n_done: int
    n_new: int
    complete: bool
    status: str          # complete, stopped (max_chunks), interrupted or failed
    elapsed: float
    message: str = ""
    notes: list = field(default_factory=list)  # repairs made to the table (repeated rows dropped)


def default_chunk_size(n_missing: int, n_threads: int) -> int:
    """About 32 tasks per thread, at most 16 runs each: runs differ a lot in length, and
    the last tasks should be short (a task costs the scheduler ~ms, a run ~0.1-1 s)."""
    return int(min(16, max(1, math.ceil(n_missing / max(1, 32 * n_threads)))))


def run_sweep(spec: SweepSpec, out, *, executor: str = "dask", scheduler: str | None = None,
              workers: int | None = None, threads_per_worker: int | None = None,
              chunk_size: int | None = None, max_chunks: int | None = None,
              progress: ProgressFn | None = None, command: list | None = None) -> SweepResult:
    """Run the missing rows of ``spec`` into the directory ``out`` (see the module docstring).

    ``executor``: ``"dask"`` (a ``LocalCluster`` with ``workers`` x ``threads_per_worker``,
    by default one single-threaded worker per core, or the cluster at ``scheduler``) or
    ``"serial"`` (this process). ``max_chunks``: stop after that many chunks (the rest
    runs next time). ``progress(done, total)`` counts runs, finished ones included.
    Ctrl-C saves the finished rows and re-raises ``KeyboardInterrupt``; a failed task
    saves them and raises :class:`SweepFailed`.
    """
    if executor not in ("dask", "serial"):
        raise SweepError(f"executor must be dask or serial (got {executor!r})", param="executor")
    for name, v in (("workers", workers), ("threads_per_worker", threads_per_worker),
                    ("chunk_size", chunk_size), ("max_chunks", max_chunks)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SweepError(f"{name} must be an integer >= 1 (got {v!r})", param=name)
    for name, v in (("workers", workers), ("threads_per_worker", threads_per_worker)):
        if v is not None and v > MAX_LOCAL_WORKERS:
            raise SweepError(f"{name} must be at most {MAX_LOCAL_WORKERS} (got {v})", param=name)
    if executor == "serial" and (scheduler or workers or threads_per_worker):
        raise SweepError("scheduler, workers and threads_per_worker need the dask "
                         "executor, not the serial one", param="serial")
    if scheduler and (workers or threads_per_worker):
        raise SweepError("workers and threads_per_worker size a local cluster; "
                         "with a scheduler the cluster is already sized", param="scheduler")
    t0 = time.perf_counter()
    cells = expand(spec)
    lock, created = _lock_out(out)
    try:
        return _run_locked(spec, out, cells, t0, executor, scheduler, workers, threads_per_worker,
                           chunk_size, max_chunks, progress, command)
    except BaseException:
        if created:  # nothing of ours was written: leave no empty directory behind
            with contextlib.suppress(OSError):
                Path(out).rmdir()
        raise
    finally:
        unlock_dir(lock)


def _lock_out(out) -> tuple[int, bool]:
    """Hold a lock on the sweep directory (created if missing) for the whole sweep, so that a
    second sweep on the same ``out`` is refused instead of computing every row again."""
    path = checked_path(out, "out", param="out")
    why = dangling_link(path)
    if why is not None:
        raise SweepError(f"out {path}: {why}; fix or remove the link, or choose another directory",
                         param="out")
    created = False
    try:
        if not path.exists():
            path.mkdir(parents=True)
            created = True
        fd = lock_dir(path)
    except FileExistsError:
        if not path.is_dir():  # neither a directory nor creatable: never loop on it
            raise SweepError(f"out {path} exists and is not a directory", param="out") from None
        return _lock_out(out)
    except NotADirectoryError:
        raise SweepError(f"out {path} exists and is not a directory", param="out") from None
    except OSError as exc:
        raise SweepError(f"out {path} is not writable ({exc.strerror or exc})", param="out") from None
    if fd is None:
        raise SweepInUse(f"out {path} is in use: another theory-sim sweep is running into it; "
                         f"wait for it to finish (then rerun to fill any missing rows)", param="out")
    return fd, created


def _run_locked(spec, out, cells, t0, executor, scheduler, workers, threads_per_worker, chunk_size,
                max_chunks, progress, command) -> SweepResult:
    store = Store(out, spec, cells)
    missing = store.missing()
    if executor == "serial" or not scheduler:  # a remote cluster's memory is not ours to know
        concurrent = 1 if executor == "serial" else (workers or _cpu_count()) * (threads_per_worker or 1)
        _check_memory(missing, chunk_size or (SERIAL_CHUNK if executor == "serial" else 16), concurrent)
    execution = {"executor": executor, "command": command}
    runner = None
    if executor == "dask" and missing:
        runner = _DaskRunner(scheduler, workers, threads_per_worker)
        execution.update(runner.describe())
    try:
        store.start(execution)
    except BaseException:
        if runner is not None:
            runner.close()
        raise
    n_threads = runner.n_threads if runner is not None else 1
    if chunk_size is None:
        chunk_size = default_chunk_size(len(missing), n_threads) if runner else SERIAL_CHUNK
    chunks = _chunks(missing, chunk_size)
    if max_chunks is not None:
        chunks = chunks[:max_chunks]
    total = len(cells)
    done = len(store.rows)
    n_new = 0
    status = "failed"
    message = ""
    if progress is not None:
        progress(done, total)
    try:
        if runner is None:
            for chunk in chunks:
                base = done

                def inner(k, _n, base=base):
                    if progress is not None:
                        progress(base + k, total)

                rows = _run_local(chunk, store.cols, inner)
                n_new += store.add(rows)
                done = len(store.rows)
                store.flush()
                if progress is not None:
                    progress(done, total)
        else:
            for rows in runner.run([_payload(c) for c in chunks], store.cols):
                n_new += store.add(rows)
                done = len(store.rows)
                store.flush()
                if progress is not None:
                    progress(done, total)
        complete = len(store.rows) == total
        status = "complete" if complete else "stopped"
    except KeyboardInterrupt as exc:
        status = "interrupted"
        if isinstance(exc, _Interrupted):
            n_new += store.add(exc.rows)
        raise
    except SweepFailed as exc:
        message = str(exc)
        raise
    finally:
        with contextlib.suppress(Exception):
            if runner is not None:
                runner.close()
        store.finish(status, n_new)
    return SweepResult(store.out, total, len(store.rows), n_new, status == "complete", status,
                       time.perf_counter() - t0, message, notes=store.notes)


def _check_memory(cells: list[Cell], chunk_size: int, concurrent: int) -> None:
    """Refuse, before any run, a sweep whose population runs at large d would not fit in this
    machine's memory: each run of a chunk keeps its basis (d x (m + L)) while the chunk runs,
    and the largest run is set up (W(0), the features, their QR) on top."""
    from ..engines.population import available_memory, materialised_cost

    pop = [c for c in cells if c.train.engine != "flow"]
    if not pop:
        return
    big = max(pop, key=lambda c: c.model.d * (c.model.m + c.model.L))
    setup, _ = materialised_cost(big.model, big.train)
    kept = 8.0 * big.model.d * (big.model.m + big.model.L) * min(chunk_size, len(pop))
    need = (setup + kept) * min(concurrent, max(1, len(pop)))
    avail = available_memory()
    if avail is not None and need > avail:
        raise SweepError(f"the sweep's runs at d={big.model.d} need about {need / 1e9:.3g} GB at once "
                         f"({min(concurrent, len(pop))} task(s) of up to {min(chunk_size, len(pop))} "
                         f"runs), more than the {avail / 1e9:.3g} GB this machine has available; use "
                         f"a smaller --d, --chunk-size or --workers", param="d")


def _run_local(chunk: list[Cell], cols, progress):
    """A chunk in this process (the kernel uses numba's threads); Ctrl-C propagates."""
    from ..ensemble import simulate_many

    results = simulate_many([c.model for c in chunk], [c.train for c in chunk],
                            head_tol=[c.head_tol for c in chunk], parallel=True,
                            progress=progress)
    rows = [(c.index, make_row(c, r, cols)) for c, r in zip(chunk, results, strict=True)
            if r["status"] != "interrupted"]
    if len(rows) < len(chunk):  # simulate_many swallowed a Ctrl-C: keep what finished
        raise _Interrupted(rows)
    return rows


class _Interrupted(KeyboardInterrupt):
    def __init__(self, rows):
        super().__init__()
        self.rows = rows


class _DaskRunner:
    """Submit chunks to a Dask cluster (a LocalCluster we own, or one at an address)."""

    def __init__(self, scheduler, workers, threads_per_worker):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SweepError("the dask executor needs dask[distributed] "
                             "(pip install 'theory-sim[sweep]'), or use the serial executor",
                             param="serial") from None
        import logging

        self.cluster = None
        self.scheduler = scheduler
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as exc:
                raise SweepError(f"scheduler {scheduler}: cannot connect ({exc})",
                                 param="scheduler") from None
        else:
            n = workers or _cpu_count()
            tpw = threads_per_worker or 1
            with _children_ignore_sigint():
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=tpw, processes=True,
                                            dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        info = self.client.scheduler_info()
        self.n_workers = len(info.get("workers", {}))
        self.n_threads = max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def describe(self) -> dict:
        return {"scheduler": self.scheduler or "local", "workers": self.n_workers,
                "threads": self.n_threads}

    def run(self, payloads: list, cols):
        from distributed import as_completed

        futures = [self.client.submit(run_chunk, p, cols, pure=False) for p in payloads]
        self.futures = futures
        try:
            for fut in as_completed(futures):
                try:
                    version, rows = fut.result()
                except Exception as exc:  # a task failed: e.g. its worker was killed too often
                    raise SweepFailed(f"a chunk of runs failed on the cluster "
                                      f"({type(exc).__name__}: {exc}); the finished runs are "
                                      f"saved, rerun the same command to continue") from None
                if version != __version__:
                    raise SweepFailed(f"the workers run theory-sim {version}, this client "
                                      f"{__version__}; install the same version on both")
                fut.release()
                yield rows
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self):
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


@contextlib.contextmanager
def _children_ignore_sigint():
    """Start worker processes with SIGINT ignored: a Ctrl-C in the terminal reaches the
    whole process group, and it is this process that stops the sweep (saving the table
    and closing the cluster), not the workers, each with a traceback of its own."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


