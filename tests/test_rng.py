"""Direct distribution tests of the counter-based generator (theory_sim/core/rng.py).

The SGD engines draw every noise patch, label, sign and view from ``xo_normal`` and
``xo_uniform`` on the xoshiro256++ stream of ``(seed, step, index)``. These tests draw
from those same kernels through small numba drivers and compare against exact
references (scipy.stats), independently of any engine.

False-alarm rate: every decision below is a two-sided test at level ``ALPHA = 1e-4``
(moment z-scores against ``Z_CRIT``, KS p-values against ``ALPHA``). The module makes
16 such decisions, so for a correct generator and a fresh seed the chance that any
of them fails is at most 16e-4 (Bonferroni). The seeds are fixed, so the outcome is
deterministic: a failure here is reproducible, not flaky. The power checks at the end
feed the same decision functions with slightly wrong samples (normals scaled by 1.05,
shifted by 0.01, uniforms bent to ``u**1.02``, streams with correlation 0.03) and
require them to be rejected, so each test can fail.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy import stats

from theory_sim.core.rng import xo_normal, xo_stream, xo_uniform

ALPHA = 1e-4
Z_CRIT = stats.norm.isf(ALPHA / 2)  # 3.89

N_STREAMS = 2000
PER_STREAM = 500  # 1e6 draws in all, spread over many streams as the kernels use them


@numba.njit(cache=False)
def _normals(seed, step, n_streams, per_stream):
    """(n_streams, per_stream) normals: row i from stream (seed, step, i)."""
    out = np.empty((n_streams, per_stream))
    for i in range(n_streams):
        st = xo_stream(seed, step, i)
        for j in range(per_stream):
            out[i, j], st = xo_normal(st)
    return out


@numba.njit(cache=False)
def _uniforms(seed, step, n_streams, per_stream):
    out = np.empty((n_streams, per_stream))
    for i in range(n_streams):
        st = xo_stream(seed, step, i)
        for j in range(per_stream):
            out[i, j], st = xo_uniform(st)
    return out


@numba.njit(cache=False)
def _first_normal(seeds, steps, indices):
    """The first normal of each stream (seeds[i], steps[i], indices[i])."""
    out = np.empty(seeds.size)
    for i in range(seeds.size):
        st = xo_stream(seeds[i], steps[i], indices[i])
        out[i], st = xo_normal(st)
    return out


# ---------------------------------------------------------------- decision functions

def normal_moment_z(x: np.ndarray) -> dict:
    """z-scores of the sample mean, variance, skewness and excess kurtosis against
    N(0, 1), each divided by its standard error under N(0, 1) for n draws:
    sqrt(1/n), sqrt(2/(n-1)), sqrt(6/n), sqrt(24/n)."""
    n = x.size
    return {
        "mean": x.mean() / np.sqrt(1.0 / n),
        "variance": (x.var(ddof=1) - 1.0) / np.sqrt(2.0 / (n - 1)),
        "skewness": stats.skew(x) / np.sqrt(6.0 / n),
        "kurtosis": stats.kurtosis(x) / np.sqrt(24.0 / n),  # Fisher: 0 for a normal
    }


def rejects_normal(x: np.ndarray) -> list:
    """Names of the checks that reject ``x ~ N(0, 1)`` at level ALPHA each."""
    bad = [k for k, z in normal_moment_z(x).items() if abs(z) > Z_CRIT]
    if stats.kstest(x, "norm").pvalue < ALPHA:
        bad.append("ks")
    return bad


def rejects_zero_correlation(x: np.ndarray, y: np.ndarray) -> bool:
    """Pearson r of independent N(0,1) pairs has standard error 1/sqrt(n)."""
    r = np.corrcoef(x, y)[0, 1]
    return bool(abs(r) * np.sqrt(x.size) > Z_CRIT)


# ---------------------------------------------------------------- the generator's normals

@pytest.fixture(scope="module")
def normals():
    return _normals(20261201, 7, N_STREAMS, PER_STREAM).ravel()


def test_normals_match_moments_of_standard_normal(normals):
    z = normal_moment_z(normals)
    assert all(abs(v) <= Z_CRIT for v in z.values()), z


def test_normals_pass_ks_against_scipy_norm(normals):
    assert stats.kstest(normals, "norm").pvalue >= ALPHA


def test_normal_tail_beyond_ziggurat_base_has_normal_mass(normals):
    # |x| > r = 3.4426 is drawn by the separate tail sampler (Marsaglia's method);
    # the KS statistic hardly sees it, so count it: binomial z-score.
    r = 3.442619855899
    p = 2.0 * stats.norm.sf(r)
    count = np.count_nonzero(np.abs(normals) > r)
    z = (count - normals.size * p) / np.sqrt(normals.size * p * (1 - p))
    assert abs(z) <= Z_CRIT, (count, normals.size * p)


def test_normals_second_seed_and_step_also_pass():
    x = _normals(3, 123456789, 500, 1000).ravel()
    assert rejects_normal(x) == []


# ---------------------------------------------------------------- uniforms

def test_uniforms_pass_ks_against_uniform():
    u = _uniforms(99, 0, N_STREAMS, PER_STREAM).ravel()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue >= ALPHA


# ---------------------------------------------------------------- independence of streams

_N_PAIRS = 100_000


def _keys(seed0=11, step0=5, index0=0):
    i = np.arange(_N_PAIRS, dtype=np.int64)
    return (np.full(_N_PAIRS, seed0, dtype=np.int64), np.full(_N_PAIRS, step0, dtype=np.int64),
            index0 + 2 * i)


@pytest.mark.parametrize("neighbour", ["index+1", "step+1", "seed+1"])
def test_neighbouring_streams_are_uncorrelated(neighbour):
    # The first draws of streams whose keys differ by one in a single coordinate:
    # the closest pairs a counter-based scheme could leak between.
    seeds, steps, indices = _keys()
    x = _first_normal(seeds, steps, indices)
    shift = {"index+1": (0, 0, 1), "step+1": (0, 1, 0), "seed+1": (1, 0, 0)}[neighbour]
    y = _first_normal(seeds + shift[0], steps + shift[1], indices + shift[2])
    assert not rejects_zero_correlation(x, y)


def test_consecutive_draws_of_one_stream_are_uncorrelated(normals):
    rows = normals.reshape(N_STREAMS, PER_STREAM)
    assert not rejects_zero_correlation(rows[:, :-1].ravel(), rows[:, 1:].ravel())


def test_stream_is_a_function_of_its_key_only():
    # Resuming at step t needs no saved state: the same key gives the same draws.
    a = _normals(5, 17, 3, 8)
    b = _normals(5, 17, 3, 8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, _normals(5, 18, 3, 8))


# ---------------------------------------------------------------- power: the checks can fail

def test_power_rejects_normals_scaled_by_1_05(normals):
    assert "variance" in rejects_normal(1.05 * normals)


def test_power_rejects_normals_shifted_by_0_01(normals):
    assert "mean" in rejects_normal(normals + 0.01)


def test_power_rejects_uniforms_bent_to_power_1_02():
    u = _uniforms(99, 0, N_STREAMS, PER_STREAM).ravel()
    assert stats.kstest(u ** 1.02, "uniform").pvalue < ALPHA


def test_power_rejects_streams_with_correlation_0_03():
    seeds, steps, indices = _keys()
    x = _first_normal(seeds, steps, indices)
    z = _first_normal(seeds, steps, indices + 1)
    rho = 0.03  # z-score about 0.03 * sqrt(1e5) = 9.5 against a bound of 3.9
    assert rejects_zero_correlation(x, rho * x + np.sqrt(1 - rho * rho) * z)


def test_power_rejects_a_heavy_tailed_sample():
    # Student t with 30 degrees of freedom: variance 1.07, excess kurtosis 0.23.
    t = stats.t.rvs(30, size=N_STREAMS * PER_STREAM, random_state=np.random.default_rng(4))
    assert "kurtosis" in rejects_normal(t / np.sqrt(30 / 28))
