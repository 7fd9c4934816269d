"""The engines of ``simulate`` (docs/model.md sections 4, 7, 8).

* sgd: one batch gradient equals finite differences of the numpy batch loss on the
  very batch the engine drew; averaged over many batches it approaches the
  population gradient (up to the O(1/N) bias of batch normalisation); a run is the
  loop of those batch gradients.
* sgd-fast (exact in distribution): the same mean gradient as sgd at every batch
  size, the same limit, and a run is the loop of its batch gradients.
* population: agrees with a slow numpy gradient-descent loop on the full W.
* all: one step is one gradient step; reproducible from the seed, independent of
  numba's thread count; the recorded trajectory, status and messages are consistent.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import reference as ref
from hypothesis import given
from hypothesis import strategies as st

import theory_sim as ts

FD_STEP = 1e-4
"""Fourth-order central-difference step (weights are O(0.3-1) here)."""

FD_TOL = 1e-6
"""|finite difference - engine gradient| relative to the largest gradient entry: the
finite-difference error (h^4 truncation, eps/h ~ 1e-11 rounding) is far below; a
wrong term in the back-propagation (e.g. missing the batch-statistics path) is O(1e-2)."""

FD_ABS = 1e-9
"""Absolute floor for the same comparison (rounding of a loss of size O(m), divided by h)."""

EXACT = 1e-12
"""Relative agreement of two computations of the same number (rounding only)."""

TRAJ_TOL = 1e-10
"""Engine vs the numpy reference loop, after a few hundred steps: O(1) quantities
(alignment, head, norms). Rounding differs (reduced vs full coordinates) by ~1e-16
per step; over 300 steps of this smooth flow the measured gap is ~1e-15. A wrong
update (learning rate, mask, missing term) moves them by > 1e-4."""

Z_GRAD = 5.0
"""|z| bound for the averaged SGD gradient vs the population gradient (12 entries,
fixed seeds; 5 standard errors leaves room for the heavy tails of cubic outputs)."""


# ---------------------------------------------------------------- sgd: one batch


SGD_CASES = [
    # d, P, k, m, L, sigma, split, features
    (5, 6, 3, 2, 2, 0.8, "bernoulli", "random"),
    (4, 8, 2, 3, 1, 1.0, "half", "basis"),
    (7, 4, 4, 1, 2, 1.3, "bernoulli", "basis"),
    (6, 6, 3, 3, 3, 0.6, "half", "random"),
]


def batch_fd(W, E, X, view1):
    """Finite differences of the numpy batch loss with the target branch fixed at W."""
    fW = ref.fd_grad(lambda Y: ref.batch_loss(Y, E, X, view1, target=W), W, FD_STEP)
    fE = ref.fd_grad(lambda Y: ref.batch_loss(W, Y, X, view1, target=W), E, FD_STEP)
    return fW, fE


@pytest.mark.parametrize("d,P,k,m,L,sigma,split,features", SGD_CASES)
def test_sgd_batch_gradient_matches_finite_differences(d, P, k, m, L, sigma, split, features, rng):
    model = ts.ModelParams(d=d, P=P, k=k, alpha=(2.0, 1.5, 1.2)[:L], pi=tuple(np.full(L, 1 / L)),
                           sigma=sigma, m=m, features=features, split=split)
    W = rng.standard_normal((m, d)) / np.sqrt(d)
    W += 0.5 * rng.standard_normal((m, L)) @ ts.feature_vectors(model).T
    E = np.eye(m) + 0.3 * rng.standard_normal((m, m))
    for step in (0, 5):
        gW, gE, loss, b = ts.sgd_gradient(W, E, model, batch=24, seed=17, step=step, return_batch=True)
        X, view1 = b["X"], b["view1"]
        assert loss == pytest.approx(ref.batch_loss(W, E, X, view1), rel=EXACT)
        fW, fE = batch_fd(W, E, X, view1)
        scale = max(np.abs(gW).max(), np.abs(gE).max())
        assert np.max(np.abs(gW - fW)) <= FD_TOL * scale + FD_ABS
        assert np.max(np.abs(gE - fE)) <= FD_TOL * scale + FD_ABS


def test_sgd_batch_depends_on_seed_and_step_only():
    model = ts.ModelParams(d=5, P=6, k=3, alpha=(2.0, 1.5), m=2)
    W1, W2 = np.ones((2, 5)), np.arange(10.0).reshape(2, 5) / 10
    b = {key: ts.sgd_gradient(W, None, model, batch=8, seed=s, step=t, return_batch=True)[3]
         for key, (W, s, t) in {"a": (W1, 3, 4), "b": (W2, 3, 4), "c": (W1, 3, 5),
                                "d": (W1, 4, 4)}.items()}
    for name in ("X", "view1", "label", "sign"):
        np.testing.assert_array_equal(b["a"][name], b["b"][name])   # W does not matter
    assert not np.array_equal(b["a"]["X"], b["c"]["X"])            # the step does
    assert not np.array_equal(b["a"]["X"], b["d"]["X"])            # the seed does
    # sample i of a batch is the same whatever the batch size (per-sample streams)
    big = ts.sgd_gradient(W1, None, model, batch=32, seed=3, step=4, return_batch=True)[3]
    np.testing.assert_array_equal(big["X"][:8], b["a"]["X"])


# ---------------------------------------------------------------- sgd: many batches


AVG_MODEL = ts.ModelParams(d=4, P=6, k=3, alpha=(1.6, 1.2), pi=(0.6, 0.4), sigma=0.9, m=2)
AVG_W = np.random.default_rng(5).standard_normal((2, 4)) / 2
AVG_E = np.array([[1.0, 0.3], [-0.2, 1.0]])
AVG_PLAN = ((16, 8000, 1), (256, 4000, 2), (512, 4000, 3))
"""(batch size N, number of batches, seed): standard errors of the mean ~4%, ~1.4% and
~1% of |grad| (measured), against a bias of ~25% of |grad| at N = 16."""

CHI2_RESOLVED = 60.0
"""The bias at N = 16 must be resolved: sum of the 12 squared z-scores above this
(P(chi2_12 > 60) = 2e-8 without a bias; measured 400-590 over six seeds)."""


@functools.cache
def _mean_batch_gradient(N, n_batches, seed, fast):
    """Mean and standard error of ``n_batches`` independent batch gradients (W and E, flat)."""
    G = np.array([np.concatenate([g.ravel() for g in ts.sgd_gradient(
        AVG_W, AVG_E, AVG_MODEL, batch=N, seed=seed, step=t, fast=fast)[:2]]) for t in range(n_batches)])
    return G.mean(axis=0), G.std(axis=0, ddof=1) / np.sqrt(n_batches)


@pytest.mark.parametrize("fast", [False, True], ids=["sgd", "sgd-fast"])
def test_sgd_gradient_averages_to_population_gradient(fast, single_thread):
    """E[batch gradient] = population gradient + b/N + O(1/N^2) (batch normalisation).

    * Richardson extrapolation 2 g(512) - g(256) removes the 1/N term: every entry
      agrees with population_grad within Z_GRAD standard errors (the O(1/N^2)
      remainder is ~1e-4 of |grad|, far below the ~2% standard error).
    * The raw error shrinks with N: resolved at N = 16 (chi-square of the 12 z-scores
      above CHI2_RESOLVED), and at N = 512 below a quarter of it (1/N predicts 1/32).
    """
    g = np.concatenate([x.ravel() for x in ts.population_grad(AVG_W, AVG_E, AVG_MODEL)])
    est = {N: _mean_batch_gradient(N, n, seed, fast) for N, n, seed in AVG_PLAN}
    rich = 2 * est[512][0] - est[256][0]
    rich_se = np.sqrt(4 * est[512][1] ** 2 + est[256][1] ** 2)
    z = (rich - g) / rich_se
    assert np.all(np.abs(z) < Z_GRAD), f"Richardson z-scores {np.round(z, 2)}"
    chi2 = np.sum(((est[16][0] - g) / est[16][1]) ** 2)
    assert chi2 > CHI2_RESOLVED, chi2
    err = {N: np.linalg.norm(mean - g) for N, (mean, _) in est.items()}
    assert err[512] < err[16] / 4, err


def test_sgd_fast_has_the_law_of_the_materialised_engine(single_thread):
    """Same law, so the same mean at every N, batch-normalisation bias included: the two
    engines' mean gradients agree within Z_GRAD (two-sample z, independent draws)."""
    for N, n, seed in AVG_PLAN:
        (ma, sa), (mb, sb) = _mean_batch_gradient(N, n, seed, False), _mean_batch_gradient(N, n, seed, True)
        z = (ma - mb) / np.sqrt(sa**2 + sb**2)
        assert np.all(np.abs(z) < Z_GRAD), (N, np.round(z, 2))


def test_sgd_fast_with_fewer_dimensions_than_neurons(single_thread):
    """d < m is a valid model (ModelParams accepts it); the fast engine must handle it
    like the materialised one (finite, same mean gradient)."""
    model = ts.ModelParams(d=2, P=4, k=2, alpha=(2.0, 1.5), m=3)
    W = np.random.default_rng(0).standard_normal((3, 2))
    means = {}
    for fast in (False, True):
        G = np.array([ts.sgd_gradient(W, None, model, batch=2000, seed=1, step=t, fast=fast)[0].ravel()
                      for t in range(200)])
        assert np.all(np.isfinite(G)), f"fast={fast}: non-finite gradient"
        means[fast] = (G.mean(axis=0), G.std(axis=0, ddof=1) / np.sqrt(len(G)))
    z = (means[False][0] - means[True][0]) / np.hypot(means[False][1], means[True][1])
    assert np.all(np.abs(z) < Z_GRAD), z


# ---------------------------------------------------------------- sgd: a run is the loop


@pytest.mark.parametrize("engine", ["sgd", "sgd-fast"])
@pytest.mark.parametrize("head", ["offdiag", "full", "frozen"])
def test_sgd_run_is_the_loop_of_batch_gradients(head, engine, single_thread):
    model = ts.ModelParams(d=6, P=6, k=3, alpha=(2.0, 1.5), sigma=0.8, m=2, split="half")
    train = ts.TrainParams(eta=0.02, eta_E=0.05, head=head, engine=engine, batch=16, steps=25,
                           seed=9, record=26)
    W0 = ts.initial_weights(model, 2)
    run = ts.simulate(model, train, W0=W0)
    mask = {"offdiag": 1 - np.eye(2), "full": np.ones((2, 2)), "frozen": np.zeros((2, 2))}[head]
    W, E = W0.copy(), np.eye(2)
    Ws, Es = [W], [E]
    for t in range(25):
        gW, gE, _ = ts.sgd_gradient(W, E, model, batch=16, seed=9, step=t, fast=engine == "sgd-fast")
        W = W - train.eta * gW
        E = E - train.eta_E * mask * gE
        Ws.append(W)
        Es.append(E)
    np.testing.assert_array_equal(run.W, W)
    np.testing.assert_array_equal(run.E_final, E)
    np.testing.assert_array_equal(run.steps, np.arange(26))
    np.testing.assert_array_equal(run.E, np.array(Es))
    V = ts.feature_vectors(model)
    norms = np.linalg.norm(np.array(Ws), axis=2)
    np.testing.assert_allclose(run.norms, norms, rtol=EXACT)
    np.testing.assert_allclose(run.alignment, np.array(Ws) @ V / norms[:, :, None], rtol=0, atol=EXACT)
    losses = [ts.population_loss(w, e, model) for w, e in zip(Ws, Es, strict=True)]
    np.testing.assert_allclose(run.loss, losses, rtol=EXACT)


# ---------------------------------------------------------------- population engine


@pytest.mark.parametrize("head,split,m", [("offdiag", "bernoulli", 2), ("offdiag", "half", 3),
                                          ("full", "bernoulli", 3), ("frozen", "half", 2)])
def test_population_engine_matches_numpy_gradient_descent(head, split, m):
    model = ts.ModelParams(d=8, P=8, k=3, alpha=(2.0, 1.5), sigma=1.0, m=m, features="random",
                           split=split)
    train = ts.TrainParams(eta=0.05, eta_E=0.05, head=head, steps=300, seed=4, record=301)
    E0 = np.eye(m) if head != "full" else np.eye(m) + 0.1 * np.random.default_rng(1).standard_normal((m, m))
    run = ts.simulate(model, train, E0=E0)
    mask = {"offdiag": 1 - np.eye(m), "full": np.ones((m, m)), "frozen": np.zeros((m, m))}[head]
    V = ts.feature_vectors(model)
    Ws, Es = ref.population_gd(run.W0, E0, V, eta=0.05, eta_E=0.05, mask=mask, steps=300,
                               **ref.model_kwargs(model))
    Ws, Es = np.array(Ws), np.array(Es)
    norms = np.linalg.norm(Ws, axis=2)
    np.testing.assert_array_equal(run.steps, np.arange(301))
    np.testing.assert_allclose(run.alignment, Ws @ V / norms[:, :, None], rtol=0, atol=TRAJ_TOL)
    np.testing.assert_allclose(run.norms, norms, rtol=TRAJ_TOL)
    np.testing.assert_allclose(run.E, Es, rtol=0, atol=TRAJ_TOL)
    np.testing.assert_allclose(run.gram, Ws @ Ws.transpose(0, 2, 1), rtol=TRAJ_TOL, atol=TRAJ_TOL)
    np.testing.assert_allclose(run.W, Ws[-1], rtol=0, atol=TRAJ_TOL)
    np.testing.assert_allclose(run.E_final, Es[-1], rtol=0, atol=TRAJ_TOL)
    kw = ref.model_kwargs(model)
    losses = [ref.closed_form(w, e, V, **kw)["loss"] for w, e in zip(Ws, Es, strict=True)]
    np.testing.assert_allclose(run.loss, losses, rtol=0, atol=TRAJ_TOL)
    # the run went somewhere: alignments and (unless frozen) the head moved visibly
    assert np.abs(run.alignment[-1] - run.alignment[0]).max() > 0.1
    if head != "frozen":
        assert np.abs(run.E[-1] - run.E[0]).max() > 1e-3


@pytest.mark.parametrize("engine", ["population", "sgd", "sgd-fast"])
@pytest.mark.parametrize("head", ["offdiag", "full", "frozen"])
def test_one_step_is_one_gradient_step(engine, head):
    model = ts.ModelParams(d=7, P=6, k=3, alpha=(2.0, 1.5), sigma=0.9, m=3)
    train = ts.TrainParams(eta=0.03, eta_E=0.07, head=head, engine=engine, batch=32, steps=1, seed=6)
    rng = np.random.default_rng(2)
    W0 = rng.standard_normal((3, 7)) / np.sqrt(7)
    E0 = np.eye(3) + 0.2 * rng.standard_normal((3, 3))
    run = ts.simulate(model, train, W0=W0, E0=E0)
    if engine == "population":
        gW, gE = ts.population_grad(W0, E0, model)
    else:
        gW, gE, _ = ts.sgd_gradient(W0, E0, model, batch=32, seed=6, step=0, fast=engine == "sgd-fast")
    mask = {"offdiag": 1 - np.eye(3), "full": np.ones((3, 3)), "frozen": np.zeros((3, 3))}[head]
    np.testing.assert_allclose(run.W, W0 - 0.03 * gW, rtol=0, atol=EXACT)
    np.testing.assert_allclose(run.E_final, E0 - 0.07 * mask * gE, rtol=0, atol=EXACT)
    np.testing.assert_array_equal(run.W0, W0)
    np.testing.assert_array_equal(run.steps, [0, 1])
    np.testing.assert_array_equal(run.E[0], E0)


# ---------------------------------------------------------------- reproducibility


def _assert_runs_identical(a, b):
    for name in ("steps", "alignment", "norms", "E", "loss", "rho", "gram", "W0", "W", "E_final"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.status, a.message, a.config) == (b.status, b.message, b.config)


@pytest.mark.parametrize("engine", ["population", "sgd", "sgd-fast"])
def test_same_seed_gives_bit_identical_runs(engine, single_thread):
    model = ts.ModelParams(d=10, P=6, k=3, alpha=(2.0, 1.5), m=2)
    train = ts.TrainParams(eta=0.02, engine=engine, batch=32, steps=200, seed=11, record=50)
    a, b = ts.simulate(model, train), ts.simulate(model, train)
    _assert_runs_identical(a, b)
    c = ts.simulate(model, ts.TrainParams(eta=0.02, engine=engine, batch=32, steps=200, seed=12,
                                          record=50))
    assert not np.array_equal(a.W, c.W)


def _sgd_thread_probe():
    model = ts.ModelParams(d=9, P=8, k=3, alpha=(2.0, 1.5), m=3)
    out = []
    for engine in ("sgd", "sgd-fast"):
        train = ts.TrainParams(eta=0.02, engine=engine, batch=100, steps=40, seed=5, record=41)
        run = ts.simulate(model, train)
        out.append(run)
        out.extend(ts.sgd_gradient(run.W, run.E_final, model, batch=1000, seed=8, step=3,
                                   fast=engine == "sgd-fast"))
    return out


def test_sgd_does_not_depend_on_the_thread_count():
    """In-process: numba.set_num_threads(1) vs all threads give bit-identical results."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread on this machine")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _sgd_thread_probe()
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = _sgd_thread_probe()
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, many, strict=True):
        if isinstance(a, ts.Run):
            _assert_runs_identical(a, b)
        else:
            np.testing.assert_array_equal(a, b)


_SUBPROCESS_PROBE = """
import numpy as np, theory_sim as ts
m = ts.ModelParams(d=9, P=8, k=3, alpha=(2.0, 1.5), m=3)
W = ts.initial_weights(m, 3)
out = []
for fast in (False, True):
    gW, gE, loss = ts.sgd_gradient(W, None, m, batch=777, seed=8, step=3, fast=fast)
    out.append(np.concatenate([gW.ravel(), gE.ravel(), [loss]]))
print(np.concatenate(out).tobytes().hex())
"""


def test_sgd_gradient_same_in_a_single_threaded_process():
    """A fresh process with NUMBA_NUM_THREADS=1 computes the same bits as this one."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _SUBPROCESS_PROBE], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout.strip()
    m = ts.ModelParams(d=9, P=8, k=3, alpha=(2.0, 1.5), m=3)
    here = []
    for fast in (False, True):
        gW, gE, loss = ts.sgd_gradient(ts.initial_weights(m, 3), None, m, batch=777, seed=8, step=3,
                                       fast=fast)
        here.append(np.concatenate([gW.ravel(), gE.ravel(), [loss]]))
    assert out == np.concatenate(here).tobytes().hex()


# ---------------------------------------------------------------- recording, status, messages


@given(steps=st.integers(0, 3000), record=st.integers(2, 60),
       engine=st.sampled_from(["population", "sgd", "sgd-fast"]))
def test_recorded_points_are_evenly_spaced_and_end_at_the_last_step(steps, record, engine, single_thread):
    if engine != "population":
        steps = steps // 20
    model = ts.ModelParams(d=5, P=4, k=2, alpha=(2.0, 1.5), m=2)
    run = ts.simulate(model, ts.TrainParams(eta=1e-3, engine=engine, batch=8, steps=steps,
                                            record=record, seed=1))
    s = run.steps
    assert run.status == "max_steps"
    assert s[0] == 0 and s[-1] == steps
    assert len(s) <= record and len(s) >= min(record // 2, steps + 1)
    assert np.all(np.diff(s) > 0)
    gaps = np.diff(s[:-1])
    assert np.all(gaps == gaps[:1])  # even spacing (the final step may come sooner)
    for name in ("alignment", "norms", "E", "loss", "rho", "gram"):
        assert getattr(run, name).shape[0] == len(s)


@pytest.mark.parametrize("engine", ["population", "sgd", "sgd-fast"])
def test_final_point_is_consistent_with_final_weights(engine, single_thread):
    model = ts.ModelParams(d=12, P=6, k=3, alpha=(2.0, 1.5), sigma=0.9, m=3)
    run = ts.simulate(model, ts.TrainParams(eta=0.02, eta_E=0.02, engine=engine, batch=64,
                                            steps=150, record=7, seed=3))
    V = ts.feature_vectors(model)
    W, E = run.W, run.E_final
    np.testing.assert_allclose(run.norms[-1], np.linalg.norm(W, axis=1), rtol=EXACT)
    np.testing.assert_allclose(run.alignment[-1], (W @ V) / np.linalg.norm(W, axis=1)[:, None],
                               rtol=0, atol=EXACT)
    np.testing.assert_allclose(run.gram[-1], W @ W.T, rtol=EXACT, atol=EXACT)
    np.testing.assert_array_equal(run.E[-1], E)
    loss, rho = ts.population_terms(W, E, model)
    assert run.loss[-1] == pytest.approx(loss, rel=EXACT)
    np.testing.assert_allclose(run.rho[-1], rho, rtol=EXACT)
    np.testing.assert_allclose(run.A[-1], W @ V, rtol=0, atol=EXACT)
    np.testing.assert_array_equal(run.flow_time, 0.02 * run.steps)


def test_unbounded_run_converges_with_every_neuron_aligned():
    model = ts.ModelParams(d=16, P=8, k=3, alpha=(3.0, 2.0), m=2)
    train = ts.TrainParams(eta=0.05, seed=2, max_flow_time=5000)
    run = ts.simulate(model, train)
    assert run.status == "converged", run.message
    assert run.message.startswith("converged at step")
    assert np.all(np.abs(run.alignment[-1]).max(axis=1) >= train.align_threshold)
    gW, gE = ts.population_grad(run.W, run.E_final, model)
    speed = (np.sqrt(np.sum(np.sum(gW**2, axis=1) / np.sum(run.W**2, axis=1)))
             + train.eta_E / train.eta * np.linalg.norm((1 - np.eye(2)) * gE))
    assert speed < train.tol  # the documented stopping rule, at the returned point


def test_runaway_norm_is_reported_as_divergence():
    model = ts.ModelParams(d=6, P=6, k=3, m=2)
    train = ts.TrainParams(eta=0.05, steps=100, max_norm=1e-3, check_every=1)
    run = ts.simulate(model, train)
    assert run.status == "diverged"
    assert "max_norm" in run.message and "--eta" in run.message


def test_zero_neuron_is_reported_as_divergence():
    model = ts.ModelParams(d=6, P=6, k=3, m=2)
    W0 = ts.initial_weights(model, 1)
    W0[1] = 0.0
    run = ts.simulate(model, ts.TrainParams(eta=0.05, steps=10), W0=W0)
    assert run.status == "diverged" and "zero" in run.message


def test_progress_callback_reports_to_the_end():
    calls = []
    model = ts.ModelParams(d=6, P=6, k=3, m=2)
    run = ts.simulate(model, ts.TrainParams(eta=0.01, steps=5000),
                      progress=lambda step, total, info: calls.append((step, total, dict(info))))
    assert calls and calls[-1][0] == 5000 and calls[-1][1] == 5000 and calls[-1][2].get("done")
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert run.status == "max_steps"


# ---------------------------------------------------------------- the engine interface

def test_registry_is_the_one_list_of_engines():
    from theory_sim.engines import ENGINES, Engine
    from theory_sim.params import ENGINES as names

    assert names == tuple(ENGINES)
    for name, engine in ENGINES.items():
        assert issubclass(engine, Engine) and engine.name == name
        assert engine.state_arrays[0] == "coords"
        for method in ("init_state", "advance", "weights"):
            assert getattr(engine, method) is not getattr(Engine, method), (name, method)


def test_a_registered_engine_runs_without_driver_changes(monkeypatch):
    """Plugging in an engine is one class and one registry entry: here a renamed copy of
    the population engine, which must then give the population engine's run to the bit,
    checkpoint and resume included."""
    from theory_sim import engines
    from theory_sim.engines.population import PopulationEngine

    class Copy(PopulationEngine):
        name = "population-copy"

    monkeypatch.setitem(engines.ENGINES, Copy.name, Copy)
    model = ts.ModelParams(d=16, P=8, k=2)
    base = dict(eta=0.05, steps=300, record=50)
    want = ts.simulate(model, ts.TrainParams(**base))
    sim = ts.Simulation(model, ts.TrainParams(**base, engine=Copy.name))
    assert isinstance(sim.engine, Copy)
    sim.advance(120)
    got = ts.resume(sim.checkpoint())
    np.testing.assert_array_equal(got.W, want.W)
    np.testing.assert_array_equal(got.alignment, want.alignment)
    assert got.status == want.status


def test_workspace_layout_matches_the_allocation():
    from theory_sim.core import population as pop

    m, r, L = 3, 7, 2
    ws = pop.make_workspace(m, r, L)
    assert len(ws) == len(pop.WORKSPACE_LAYOUT)
    shapes = {"A": (m, L), "gram": (m, m), "rho": (m,), "gB": (m, r), "gE": (m, m)}
    for name, shape in shapes.items():
        assert ws[pop.WORKSPACE_LAYOUT.index(name)].shape == shape, name
    assert pop.ws_gB(ws) is ws[pop.WS_GB] and pop.ws_gE(ws) is ws[pop.WS_GE]


@pytest.mark.parametrize("engine", ["sgd", "sgd-fast"])
def test_sgd_phase_times_do_not_depend_on_record(engine, single_thread):
    """The SGD engines observe the phase events at every step: a run recorded at 10 points
    reports the phase times read off the same run recorded at every step."""
    model = ts.ModelParams(d=16, P=8, k=2, alpha=(4.0, 2.0))
    base = dict(engine=engine, eta=0.5, eta_E=0.05, batch=64, steps=1500, seed=5)
    every = ts.simulate(model, ts.TrainParams(**base, record=1502))
    coarse = ts.simulate(model, ts.TrainParams(**base, record=10))
    want = ts.analysis.phase_times(every, use_events=False)
    assert want.T1 is not None  # the case exercises the events
    assert ts.analysis.phase_times(coarse) == want
    assert ts.analysis.phase_times(every) == want
