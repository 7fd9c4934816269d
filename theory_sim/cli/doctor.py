"""``theory-sim doctor``: versions and machine facts for bug reports, and the kernel cache per engine."""

from __future__ import annotations

import importlib
import os
import platform
import sys
from pathlib import Path

from .progress import LOADED_FACTOR

ENGINE_KERNELS = {
    # the entry kernels each engine calls (each compiled separately); the closed-form loss
    # and gradient serve the final point of every run and the regime check of `run`
    "population": (("core.population", "population_advance"), ("core.moments", "loss_rho"),
                   ("core.moments", "loss_grad")),
    "sgd": (("core.sgd", "sgd_advance"), ("core.moments", "loss_rho"), ("core.moments", "loss_grad")),
    "sgd-fast": (("core.sgd", "sgd_advance"), ("core.moments", "loss_rho"), ("core.moments", "loss_grad")),
    "flow": (("core.flow", "flow_init"), ("core.flow", "flow_advance"), ("core.flow", "_record"),
             ("core.moments", "loss_rho"), ("core.moments", "loss_grad")),
}
"""Engine -> (module under theory_sim, kernel name) of the numba dispatchers it needs."""

COMPILE_SECONDS = {"population": 25, "sgd": 45, "sgd-fast": 45, "flow": 55}
"""First-compile times on a 2-core machine, cold cache, idle (CPU time of the compile: population
22 s, sgd 45 s, flow 34-51 s); under load the wall time is up to ``progress.LOADED_FACTOR`` times
that (population 28 s at load 1.5, sgd 62 s at load 3, flow 58 s at load 6, 134 s at load 4)."""


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="print versions, CPU count and the kernel cache state per engine",
                       description="Print what a bug report needs: versions, CPUs, and whether each "
                                   "engine's kernels are compiled (warm) or still to compile (cold).")
    p.set_defaults(func=cmd_doctor)


def numba_cache_state() -> tuple[str, int]:
    """``(cache directory of this version's kernels, compiled kernel index files in it)``."""
    from ..core._jit import kernel_cache_dir

    where = Path(kernel_cache_dir())
    found = list(where.rglob("*.nbi")) if where.exists() else []
    return str(where), len(found)


def _dispatcher(module: str, name: str):
    return getattr(importlib.import_module(f"theory_sim.{module}"), name)


def kernel_ready(dispatcher) -> bool:
    """True when calling ``dispatcher`` will not compile: it is compiled in this process, or
    numba's on-disk index holds machine code for this CPU from the current source."""
    if getattr(dispatcher, "overloads", None):
        return True
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is None:
        return False
    try:
        index = cache_file._load_index()  # {} when missing or stale (source changed)
        magic = dispatcher.targetctx.codegen().magic_tuple()
    except Exception:  # an unreadable index: numba recompiles, so does this answer
        return False
    return any(isinstance(key, tuple) and len(key) > 1 and key[1] == magic for key in index)


def engine_cache_state(engine: str) -> str:
    """``warm`` (every kernel of the engine is compiled), ``cold`` (the next run compiles),
    or ``unknown (...)`` if a kernel cannot be found."""
    missing = []
    for module, name in ENGINE_KERNELS.get(engine, ()):
        try:
            dispatcher = _dispatcher(module, name)
        except (ImportError, AttributeError):
            return f"unknown (no kernel theory_sim.{module}.{name})"
        if not kernel_ready(dispatcher):
            missing.append(name)
    if not ENGINE_KERNELS.get(engine):
        return "unknown (no kernel list for this engine)"
    return "cold" if missing else "warm"


def _version(name: str) -> str:
    """The installed version of ``name`` without importing it (``not installed`` if absent)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cache_problem() -> str | None:
    """Why the kernel cache directory cannot be written (``None`` if it can): numba then
    compiles every kernel again in every process, silently."""
    import tempfile

    from ..core._jit import kernel_cache_dir

    where = kernel_cache_dir()
    try:
        os.makedirs(where, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".probe-"):
            pass
    except OSError as exc:
        return (f"the kernel cache {where} is not writable ({exc.strerror or exc}): every run compiles "
                f"its kernels again; set NUMBA_CACHE_DIR to a writable directory")
    return None


def cmd_doctor(args) -> int:
    import numba

    from .. import __version__

    where, n_index = numba_cache_state()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    problem = cache_problem()
    lines = [
        f"theory-sim {__version__}",
        f"python     {sys.version.split()[0]} ({platform.python_implementation()}, {platform.machine()})",
        f"numpy      {_version('numpy')}",
        f"scipy      {_version('scipy')}",
        f"numba      {numba.__version__} (threads {numba.config.NUMBA_NUM_THREADS}, "
        f"layer {numba.config.THREADING_LAYER})",
        f"matplotlib {_version('matplotlib')}",
        f"dask       {_version('dask')} (distributed {_version('distributed')})",
        f"cpus       {os.cpu_count()} (usable {usable})",
        f"platform   {platform.platform()}",
        f"numba cache {where}: {n_index} compiled kernel index files"
        + (" (not writable: every run compiles again)" if problem else ""),
    ]
    for engine in ENGINE_KERNELS:
        state = engine_cache_state(engine)
        if state == "cold":
            state += (f" (the first {engine} run compiles its kernels: ~{COMPILE_SECONDS[engine]} s "
                      f"idle, up to {LOADED_FACTOR:g}x that under load)")
        lines.append(f"  engine {engine:<10s} {state}")
    from .output import shown

    print("\n".join(shown(line) for line in lines))  # NUMBA_CACHE_DIR may hold anything
    return 0
