"""Counter-based random numbers for the SGD kernels.

Every (seed, step, sample) triple owns an independent SplitMix64 stream, so a run
is bit-reproducible whatever the number of threads, and resuming at step ``t``
needs no saved generator state: the counter *is* the state.
All arithmetic is on ``uint64`` (mixing in an ``int64`` would promote to float).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0


@njit
def mix64(z):
    """SplitMix64 finaliser (a bijection of uint64 with full avalanche)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit
def stream_state(seed, step, index):
    """Starting state of the stream for ``(seed, step, index)`` (all non-negative ints)."""
    z = mix64(np.uint64(seed) + _GOLDEN)
    z = mix64(z ^ (np.uint64(step) * _M1 + _GOLDEN))
    z = mix64(z ^ (np.uint64(index) * _M2 + _GOLDEN))
    return z


@njit
def next_uniform(state):
    """Return ``(u, new_state)`` with ``u`` uniform on [0, 1) (53 random bits)."""
    state = state + _GOLDEN
    z = mix64(state)
    return float(z >> _S11) * _TWO_M53, state


@njit
def next_normal_pair(state):
    """Two independent standard normals (Marsaglia polar method) and the new state."""
    while True:
        u, state = next_uniform(state)
        v, state = next_uniform(state)
        x = 2.0 * u - 1.0
        y = 2.0 * v - 1.0
        s = x * x + y * y
        if 0.0 < s < 1.0:
            f = math.sqrt(-2.0 * math.log(s) / s)
            return x * f, y * f, state
