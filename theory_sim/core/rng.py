"""Counter-based random numbers for the SGD kernels.

Every (seed, step, sample) triple owns an independent SplitMix64 stream, so a run
is bit-reproducible whatever the number of threads, and resuming at step ``t``
needs no saved generator state: the counter *is* the state.
All arithmetic is on ``uint64`` (mixing in an ``int64`` would promote to float).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import njit, njit_inline

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


# ---------------------------------------------------------------- ziggurat normals
# Marsaglia & Tsang's ziggurat in Doornik's formulation (ZIGNOR, 2005) with 128
# layers: ~98.8% of draws cost one 64-bit output, a table load and a comparison.
_ZIG_C = 128
_ZIG_R = 3.442619855899
_ZIG_V = 9.91256303526217e-3


def _ziggurat_tables():
    x = np.zeros(_ZIG_C + 1)
    f = math.exp(-0.5 * _ZIG_R * _ZIG_R)
    x[0] = _ZIG_V / f  # the base layer, including the tail, as a rectangle of area V
    x[1] = _ZIG_R
    for i in range(2, _ZIG_C):
        x[i] = math.sqrt(-2.0 * math.log(_ZIG_V / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    x[_ZIG_C] = 0.0
    ratio = x[1:] / x[:-1]
    return x, ratio


ZIG_X, ZIG_RATIO = _ziggurat_tables()
_MASK7 = np.uint64(_ZIG_C - 1)


# ---------------------------------------------------------------- xoshiro256++ streams
# The SGD kernels draw ~10^6 normals a step: SplitMix64's two multiplications per
# output are the bottleneck there. xoshiro256++ (Blackman & Vigna) needs only
# shifts, rotations, xors and adds; each (seed, step, sample) stream starts from
# four SplitMix64 outputs of the counter-based key, as the authors recommend.
_S17 = np.uint64(17)
_S45 = np.uint64(45)
_S19 = np.uint64(19)
_S23 = np.uint64(23)
_S41 = np.uint64(41)
_S64_45 = np.uint64(64 - 45)


@njit_inline
def xo_stream(seed, step, index):
    """The xoshiro256++ state (a 4-tuple of uint64) of stream ``(seed, step, index)``."""
    z = stream_state(seed, step, index)
    return (mix64(z + _GOLDEN), mix64(z + _GOLDEN * np.uint64(2)),
            mix64(z + _GOLDEN * np.uint64(3)), mix64(z + _GOLDEN * np.uint64(4)))


@njit_inline
def xo_next(st):
    """Next 64-bit output of xoshiro256++ and the new state."""
    s0, s1, s2, s3 = st
    x = s0 + s3
    result = ((x << _S23) | (x >> _S41)) + s0
    t = s1 << _S17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _S45) | (s3 >> _S64_45)
    return result, (s0, s1, s2, s3)


@njit_inline
def xo_uniform(st):
    """Uniform on [0, 1) (53 bits) and the new state."""
    z, st = xo_next(st)
    return float(z >> _S11) * _TWO_M53, st


@njit
def _xo_normal_tail(st, negative):
    while True:
        u, st = xo_uniform(st)
        v, st = xo_uniform(st)
        x = math.log(1.0 - u) / _ZIG_R
        y = math.log(1.0 - v)
        if -2.0 * y >= x * x:
            z = _ZIG_R - x
            return (-z if negative else z), st


@njit_inline
def xo_normal(st):
    """One standard normal (ziggurat) and the new state.

    Readable form of the fast path: with ``i`` uniform on 0..127 and ``u`` uniform on
    (-1, 1), return ``u * X[i]`` when it falls inside layer ``i``'s inner rectangle.
    The 7 low bits of the 64-bit output choose the layer and its 53 high bits give
    ``u``; they do not overlap.
    """
    while True:
        z, st = xo_next(st)
        i = int(z & _MASK7)
        u = 2.0 * (float(z >> _S11) * _TWO_M53) - 1.0
        if abs(u) < ZIG_RATIO[i]:
            return u * ZIG_X[i], st
        if i == 0:
            return _xo_normal_tail(st, u < 0.0)
        x = u * ZIG_X[i]
        f0 = math.exp(-0.5 * (ZIG_X[i] * ZIG_X[i] - x * x))
        f1 = math.exp(-0.5 * (ZIG_X[i + 1] * ZIG_X[i + 1] - x * x))
        w, st = xo_uniform(st)
        if f1 + w * (f0 - f1) < 1.0:
            return x, st
