"""Numba compilation flags, set in one place for every kernel.

``cache=True`` stores compiled machine code next to the sources (or in
``NUMBA_CACHE_DIR``) so that a second ``theory-sim run`` does not pay the
compile time again. ``fastmath`` stays off: the kernels are reference
implementations and must be bit-reproducible and IEEE-exact (NaN checks rely
on it).
"""

from __future__ import annotations

import numba

JIT_OPTIONS = {"cache": True, "fastmath": False, "nogil": True}

njit = numba.njit(**JIT_OPTIONS)
"""Decorator for serial kernels."""

njit_parallel = numba.njit(parallel=True, **JIT_OPTIONS)
"""Decorator for kernels that use ``numba.prange``."""

prange = numba.prange

# Status codes returned by every kernel (see theory_sim.simulate.STATUS_NAMES).
STATUS_RUNNING = 0
STATUS_CONVERGED = 1
STATUS_MAX_STEPS = 2
STATUS_NONFINITE = 3
STATUS_RUNAWAY = 4
STATUS_DEGENERATE = 5

njit_inline = numba.njit(inline="always", **JIT_OPTIONS)
"""Decorator for small helpers of the inner loops: inlined at the numba IR level so
that array arguments cost no call overhead or reference counting."""
