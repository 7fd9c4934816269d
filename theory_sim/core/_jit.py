"""Numba compilation flags, set in one place for every kernel.

``cache=True`` stores compiled machine code next to the sources (or in
``NUMBA_CACHE_DIR``) so that a second ``theory-sim run`` does not pay the
compile time again. ``fastmath`` stays off: the kernels are reference
implementations and must be bit-reproducible and IEEE-exact (NaN checks rely
on it).
"""

from __future__ import annotations

import numba

JIT_OPTIONS = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}

njit = numba.njit(**JIT_OPTIONS)
"""Decorator for serial kernels."""

njit_parallel = numba.njit(parallel=True, **JIT_OPTIONS)
"""Decorator for kernels that use ``numba.prange``."""

prange = numba.prange

# Status codes returned by every kernel (names and messages: theory_sim.status).
STATUS_RUNNING = 0
STATUS_CONVERGED = 1
STATUS_MAX_STEPS = 2
STATUS_NONFINITE = 3
STATUS_RUNAWAY = 4
STATUS_DEGENERATE = 5
# flow engine (core/flow/)
STATUS_MAX_FLOW_TIME = 6
STATUS_STEP_UNDERFLOW = 7
STATUS_VANISHING = 8
# mechanism ablations without BN (core/variants.py, docs/model.md section 12)
STATUS_VANISHED = 9
VANISH_TOL = 0.05
"""Without BN, ``W -> 0`` is where the runs go: a run stops as ``vanished`` when every
``|w_j| < VANISH_TOL * |w_j(0)|`` (checked before the convergence test). The loss is
homogeneous of degree 6 in ``W`` and, with the online target and ``E = I``,
``d|W|^2/dt = -12 sum_j (DF_j - N_j) <= 0``, so the decay is algebraic (``|w|^-4 ~ t``):
a strict tolerance would take forever, 5% of the start is reached in O(100) flow time."""

njit_inline = numba.njit(inline="always", **JIT_OPTIONS)
"""Decorator for small helpers of the inner loops: inlined at the numba IR level so
that array arguments cost no call overhead or reference counting."""


def _source_fingerprint() -> str:
    """Hash of every kernel source file and of the numba/Python versions.

    numba's on-disk cache checks only the timestamp of the file that defines a
    function, not of the files it calls into (an inlined RNG in rng.py, the shared
    step in population.py): after an upgrade or an edit that would load stale
    machine code. Keying the cache directory on all kernel sources rules that out.
    """
    import hashlib
    import sys
    from pathlib import Path

    h = hashlib.sha256(f"{numba.__version__}|{sys.version}".encode())
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):  # core/flow/ too
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def kernel_cache_dir() -> str:
    """Where compiled kernels are cached: ``$NUMBA_CACHE_DIR`` (or the user cache
    directory) plus a fingerprint of the kernel sources."""
    import os
    from pathlib import Path

    root = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "theory-sim", "numba")
    return os.path.join(root, _source_fingerprint())
