"""The benchmark peers (``benchmarks/peers``) compute what theory-sim computes.

PyTorch-eager and JAX-jit re-implementations of docs/model.md sections 3 and 6 are
compared with theory-sim at random points: the population loss and its
stop-gradient gradient (``population_loss`` / ``population_grad``, also with a
separate target branch), a few steps of gradient descent (``simulate``), and the
mini-batch loss and gradient on the exact batch theory-sim drew
(``sgd_gradient(..., return_batch=True)``).

They run wherever the ``bench`` extra is installed (``pip install -e '.[test,bench]'``,
then ``python -m pytest -q tests/test_peers.py``, or the whole suite) and are skipped,
each with that instruction, where torch / jax is not installed. An installed peer that
fails to import is a failure, not a skip.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

import numpy as np
import pytest

import theory_sim as ts

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RTOL = 1e-8


BENCH_INSTALL = "pip install -e '.[test,bench]'"


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(params=["torch", "jax"])
def peer(request):
    if not installed(request.param):
        pytest.skip(f"{request.param} is not installed (the bench extra: {BENCH_INSTALL})")
    return importlib.import_module(f"benchmarks.peers.{request.param}_peer")


def assert_close(actual, expected, rtol=RTOL, scale=None):
    """Elementwise ``rtol``, with an absolute floor of 1e-12 times ``scale`` (default:
    the largest entry) for entries that vanish exactly and are only rounding noise."""
    expected = np.asarray(expected)
    scale = float(np.max(np.abs(expected))) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12 * scale)


def assert_grads_close(gW, gE, ref_gW, ref_gE, W, E):
    """Compare ``(dL/dW, dL/dE)``. The loss is invariant to rescaling a row of ``E``
    (``sum_r E_jr dL/dE_jr = 0``), so an entry of ``dL/dE`` can be pure rounding noise
    (always for ``m = 1``); the absolute floor uses the common scale
    ``max(|W| |dL/dW|, |E| |dL/dE|)`` of both gradients, divided by each variable's size."""
    s = max(np.max(np.abs(W)) * np.max(np.abs(ref_gW)), np.max(np.abs(E)) * np.max(np.abs(ref_gE)))
    assert_close(gW, ref_gW, scale=s / np.max(np.abs(W)))
    assert_close(gE, ref_gE, scale=s / np.max(np.abs(E)))


POP_MODELS = [
    ts.ModelParams(d=7),
    ts.ModelParams(d=9, P=10, k=3, alpha=(4.0, 2.0, 1.5), pi=(0.2, 0.3, 0.5), sigma=0.7, m=3),
    ts.ModelParams(d=5, P=6, k=2, alpha=(2.0,), pi=(1.0,), sigma=1.3, m=1),
]


def _point(model, rng, scale=0.5):
    W = scale * rng.standard_normal((model.m, model.d))
    E = np.eye(model.m) + 0.2 * rng.standard_normal((model.m, model.m))
    return W, E


@pytest.mark.parametrize("model", POP_MODELS, ids=["default", "m3-L3", "m1-L1"])
@pytest.mark.parametrize("point", range(3))
def test_population_loss_and_grad(peer, model, point):
    rng = np.random.default_rng([point, model.m, model.d])
    W, E = _point(model, rng)
    loss, gW, gE = peer.population_loss_grad(W, E, model)
    assert_close(loss, ts.population_loss(W, E, model))
    ref_gW, ref_gE = ts.population_grad(W, E, model)
    assert_grads_close(gW, gE, ref_gW, ref_gE, W, E)


@pytest.mark.parametrize("model", POP_MODELS[:2], ids=["default", "m3-L3"])
def test_population_grad_with_separate_target(peer, model):
    """The stop-gradient branch at other weights: matches, and differs from target = W."""
    rng = np.random.default_rng(7)
    W, E = _point(model, rng)
    target = W + 0.1 * rng.standard_normal(W.shape)
    loss, gW, gE = peer.population_loss_grad(W, E, model, target=target)
    assert_close(loss, ts.population_loss(W, E, model, target=target))
    ref_gW, ref_gE = ts.population_grad(W, E, model, target=target)
    assert_grads_close(gW, gE, ref_gW, ref_gE, W, E)
    same_gW, _ = ts.population_grad(W, E, model)
    assert not np.allclose(gW, same_gW, rtol=1e-3)  # the comparison can tell them apart


@pytest.mark.parametrize("head", ["offdiag", "full", "frozen"])
def test_population_runner_matches_simulate(peer, head):
    model = ts.ModelParams(d=16)
    W0 = ts.initial_weights(model, 3)
    train = ts.TrainParams(eta=1e-3, eta_E=2e-3, head=head, steps=40, record=2)
    run = ts.simulate(model, train, W0=W0)
    runner = peer.PopulationRunner(model, W0, eta=train.eta, eta_E=train.eta_E, head=head)
    runner.run(40)
    W, E = runner.state()
    assert_close(W, run.W, rtol=1e-10)
    assert_close(E, run.E_final, rtol=1e-10)
    assert not np.allclose(W, W0, rtol=1e-6)  # it moved


SGD_CASES = [
    (ts.ModelParams(d=64), 64, 2.0),
    (ts.ModelParams(d=24, P=8, k=3, alpha=(4.0, 2.0, 1.5), pi=(0.2, 0.3, 0.5), sigma=0.5, m=3), 32, 3.0),
    (ts.ModelParams(d=512), 256, 1.0),  # the benchmark's configuration
]


@pytest.mark.parametrize("case", range(len(SGD_CASES)), ids=["default-d64", "m3-L3", "bench-d512"])
@pytest.mark.parametrize("step", [0, 5])
def test_sgd_loss_and_grad_on_theory_sim_batch(peer, case, step):
    model, batch, scale = SGD_CASES[case]
    rng = np.random.default_rng([case, step])
    W = scale * ts.initial_weights(model, case + 11)
    E = np.eye(model.m) + 0.2 * rng.standard_normal((model.m, model.m))
    gW, gE, loss, data = ts.sgd_gradient(W, E, model, batch=batch, seed=2, step=step, return_batch=True)
    assert data["X"].shape == (batch, model.P, model.d)
    p_loss, p_gW, p_gE = peer.sgd_loss_grad(W, E, data["X"], data["view1"])
    assert_close(p_loss, loss)
    assert_grads_close(p_gW, p_gE, gW, gE, W, E)


def test_sgd_grad_depends_on_the_batch(peer):
    """A different view split gives a different gradient: the comparison above can fail."""
    model = ts.ModelParams(d=64)
    W = 2.0 * ts.initial_weights(model, 1)
    gW, _, _, data = ts.sgd_gradient(W, np.eye(2), model, batch=64, seed=2, return_batch=True)
    flipped = data["view1"].copy()
    flipped[0] = ~flipped[0]
    _, p_gW, _ = peer.sgd_loss_grad(W, np.eye(2), data["X"], flipped)
    assert not np.allclose(p_gW, gW, rtol=1e-6)


def _sample(peer, model, N, seed):
    """One batch from the peer's own sampler (the one its benchmark step uses)."""
    from benchmarks.peers import constants

    c = constants(model)
    if peer.__name__.endswith("torch_peer"):
        import torch

        gen = torch.Generator().manual_seed(seed)
        X, view1 = peer.sample_batch(c, N, gen, torch.tensor(c.alpha, dtype=torch.float64),
                                     torch.tensor(c.pi, dtype=torch.float64))
        return X.numpy(), view1.numpy()
    import jax

    X, view1 = peer.sample_batch(jax.random.PRNGKey(seed), c, N)
    return np.asarray(X), np.asarray(view1)


def test_peer_sampler_follows_the_data_model(peer):
    model = ts.ModelParams(d=32, P=8, k=3, alpha=(4.0, 2.0), pi=(0.25, 0.75), sigma=0.5)
    N = 4000
    X, view1 = _sample(peer, model, N, seed=5)
    assert X.shape == (N, model.P, model.d) and view1.shape == (N, model.P)
    # feature patches: exactly k per sample, all equal to s * alpha_l * e_l
    sparse = np.count_nonzero(X, axis=2) == 1
    assert np.all(sparse.sum(axis=1) == model.k)
    feat = X[sparse].reshape(N, model.k, model.d)
    assert np.all(feat == feat[:, :1])
    label = np.argmax(np.abs(feat[:, 0]), axis=1)
    amp = feat[np.arange(N), 0, label]
    assert np.all(np.abs(amp) == np.asarray(model.alpha)[label])
    assert abs(np.mean(label == 1) - 0.75) < 0.03
    assert abs(np.mean(amp > 0) - 0.5) < 0.03
    # noise patches: N(0, sigma^2) entries; view 1 holds each patch with probability 1/2
    noise = X[~sparse]
    assert abs(noise.std() - model.sigma) < 0.01 and abs(noise.mean()) < 0.01
    assert abs(view1.mean() - 0.5) < 0.01
    # the feature patches' positions are uniform over the P patches
    pos = sparse.mean(axis=0)
    assert np.all(np.abs(pos - model.k / model.P) < 0.04)


def test_peers_reject_what_they_do_not_implement():
    from benchmarks.peers import constants

    with pytest.raises(ValueError, match="basis"):
        constants(ts.ModelParams(d=8, features="random"))
    with pytest.raises(ValueError, match="Bernoulli"):
        constants(ts.ModelParams(d=8, split="half"))
