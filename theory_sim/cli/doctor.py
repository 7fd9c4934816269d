"""``theory-sim doctor``: versions and machine facts for bug reports."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="print versions, CPU count and numba cache state",
                       description="Print what a bug report needs: versions, CPUs, numba cache state.")
    p.set_defaults(func=cmd_doctor)


def numba_cache_state() -> tuple[str, int]:
    """``(cache directory of this version's kernels, compiled kernel index files in it)``."""
    from ..core._jit import kernel_cache_dir

    where = Path(kernel_cache_dir())
    found = list(where.rglob("*.nbi")) if where.exists() else []
    return str(where), len(found)


def cmd_doctor(args) -> int:
    import numba
    import numpy
    import scipy

    from .. import __version__

    where, n_index = numba_cache_state()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    warm = "warm" if n_index > 0 else "cold (the first run compiles the kernels: ~10-60 s)"
    lines = [
        f"theory-sim {__version__}",
        f"python     {sys.version.split()[0]} ({platform.python_implementation()}, {platform.machine()})",
        f"numpy      {numpy.__version__}",
        f"scipy      {scipy.__version__}",
        f"numba      {numba.__version__} (threads {numba.config.NUMBA_NUM_THREADS}, "
        f"layer {numba.config.THREADING_LAYER})",
        f"cpus       {os.cpu_count()} (usable {usable})",
        f"platform   {platform.platform()}",
        f"numba cache {where}: {n_index} compiled kernel index files: {warm}",
    ]
    print("\n".join(lines))
    return 0
