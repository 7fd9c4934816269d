"""JAX (jit, float64, CPU) peer of theory-sim: see ``benchmarks/peers/__init__.py``.

Importing this module turns on ``jax_enable_x64`` (float64 everywhere in the
process). The population run is one jitted ``lax.fori_loop`` over the steps; the
SGD step (sampling, forward, backward, update) is one jitted function.
"""

from __future__ import annotations

from functools import partial

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after enabling x64)
import numpy as np  # noqa: E402

from . import Constants, constants, head_mask_list  # noqa: E402

DTYPE = jnp.float64


# ---------------------------------------------------------------- population (section 6)

def population_loss_j(W, E, c: Constants, target=None):
    """Closed-form population loss with the stop-gradient of docs/model.md section 6.

    ``target`` (default ``W``) are the target branch's weights, behind
    ``stop_gradient``: ``A3`` of ``G`` inside ``N_j`` and all of ``DG_j`` are constants.
    """
    lam = jnp.asarray(c.lam, dtype=DTYPE)
    Wt = jax.lax.stop_gradient(W if target is None else target)
    A = W[:, : c.L]                       # v_l = e_l
    At3 = Wt[:, : c.L] ** 3
    C = c.sigma2 * (W @ W.T)
    dC = jnp.diagonal(C)
    M = 9.0 * dC[:, None] * dC[None, :] * C + 6.0 * C**3
    H = E @ A**3
    N = c.kx * jnp.sum(lam * H * At3, axis=1)
    DF = c.k2 * jnp.sum(lam * H**2, axis=1) + c.mu * jnp.sum((E @ M) * E, axis=1)
    Ct_diag = c.sigma2 * jnp.sum(Wt * Wt, axis=1)
    DG = c.k2 * jnp.sum(lam * At3**2, axis=1) + c.mu * 15.0 * Ct_diag**3
    rho = N / jnp.sqrt(DF * DG)
    return jnp.sum(2.0 - 2.0 * rho)


@partial(jax.jit, static_argnums=(2,))
def _population_value_and_grad(W, E, c, target):
    return jax.value_and_grad(population_loss_j, argnums=(0, 1))(W, E, c, target)


def population_loss_grad(W, E, params, target=None):
    """``(loss, dL/dW, dL/dE)`` as NumPy arrays (``dL/dE`` unmasked), for the tests."""
    c = constants(params)
    W = jnp.asarray(W, dtype=DTYPE)
    tgt = W if target is None else jnp.asarray(target, dtype=DTYPE)
    loss, (gW, gE) = _population_value_and_grad(W, jnp.asarray(E, dtype=DTYPE), c, tgt)
    return float(loss), np.asarray(gW), np.asarray(gE)


@partial(jax.jit, static_argnums=(3,))
def _population_run(W, E, n_steps, c, mask, eta, eta_E):
    grad = jax.grad(population_loss_j, argnums=(0, 1))

    def body(_, state):
        W, E = state
        gW, gE = grad(W, E, c)
        return W - eta * gW, E - eta_E * mask * gE

    return jax.lax.fori_loop(0, n_steps, body, (W, E))


class PopulationRunner:
    """Gradient descent on the population loss: the whole run is one jitted ``fori_loop``."""

    def __init__(self, params, W0, E0=None, *, eta=1e-3, eta_E=None, head="offdiag"):
        self.c = constants(params)
        self.eta = float(eta)
        self.eta_E = self.eta / 10.0 if eta_E is None else float(eta_E)
        self.mask = jnp.asarray(head_mask_list(head, self.c.m), dtype=DTYPE)
        self.W0 = jnp.asarray(W0, dtype=DTYPE)
        self.E0 = jnp.eye(self.c.m, dtype=DTYPE) if E0 is None else jnp.asarray(E0, dtype=DTYPE)
        self.reset()

    def reset(self):
        self.W, self.E = self.W0, self.E0

    def run(self, n_steps: int) -> None:
        W, E = _population_run(self.W, self.E, n_steps, self.c, self.mask, self.eta, self.eta_E)
        self.W, self.E = W.block_until_ready(), E.block_until_ready()

    def state(self):
        return np.asarray(self.W), np.asarray(self.E)


# ---------------------------------------------------------------- SGD (section 3)

def sgd_loss_j(W, E, X, view1):
    """Batch loss ``sum_j (2 - 2 corr_j)``, written as ``mean_i |BN(F)_i - SG[BN(G)_i]|^2``.

    ``X`` (N, P, d), ``view1`` (N, P) bool; BN centres over the batch and divides by
    the biased standard deviation; gradient through the online branch's statistics.
    """
    cube = (X @ W.T) ** 3                   # (N, P, m)
    v1 = view1[..., None].astype(DTYPE)
    f1 = jnp.sum(cube * v1, axis=1)
    f2 = jax.lax.stop_gradient(jnp.sum(cube * (1.0 - v1), axis=1))
    F = f1 @ E.T
    Fh = (F - F.mean(0)) / jnp.sqrt(F.var(0))
    Gh = (f2 - f2.mean(0)) / jnp.sqrt(f2.var(0))
    return jnp.mean(jnp.sum((Fh - Gh) ** 2, axis=1))


_sgd_value_and_grad = jax.jit(jax.value_and_grad(sgd_loss_j, argnums=(0, 1)))


def sgd_loss_grad(W, E, X, view1):
    """``(loss, dL/dW, dL/dE)`` on a given batch, as NumPy arrays (``dL/dE`` unmasked)."""
    loss, (gW, gE) = _sgd_value_and_grad(jnp.asarray(W, dtype=DTYPE), jnp.asarray(E, dtype=DTYPE),
                                         jnp.asarray(X, dtype=DTYPE), jnp.asarray(view1, dtype=bool))
    return float(loss), np.asarray(gW), np.asarray(gE)


def sample_batch(key, c: Constants, N: int):
    """A fresh batch of docs/model.md sections 1-2: ``X`` (N, P, d) and ``view1`` (N, P) bool."""
    P, k, d = c.P, c.k, c.d
    k_lab, k_sign, k_perm, k_view, k_noise = jax.random.split(key, 5)
    label = jax.random.choice(k_lab, c.L, (N,), p=jnp.asarray(c.pi, dtype=DTYPE))
    sign = jax.random.rademacher(k_sign, (N,), dtype=DTYPE)
    amp = sign * jnp.asarray(c.alpha, dtype=DTYPE)[label]
    signal = amp[:, None] * jax.nn.one_hot(label, d, dtype=DTYPE)          # (N, d)
    noise = c.sigma * jax.random.normal(k_noise, (N, P - k, d), dtype=DTYPE)
    # slot i of sample n holds patch order[n, i]; the first k slots are the feature patches
    slots = jnp.concatenate([jnp.broadcast_to(signal[:, None, :], (N, k, d)), noise], axis=1)
    order = jnp.argsort(jax.random.uniform(k_perm, (N, P)), axis=1)
    X = jnp.take_along_axis(slots, jnp.argsort(order, axis=1)[:, :, None], axis=1)
    view1 = jax.random.bernoulli(k_view, 0.5, (N, P))
    return X, view1


@partial(jax.jit, static_argnums=(3, 4))
def _sgd_step(W, E, key, c, N, mask, eta, eta_E):
    key, sub = jax.random.split(key)
    X, view1 = sample_batch(sub, c, N)
    loss, (gW, gE) = jax.value_and_grad(sgd_loss_j, argnums=(0, 1))(W, E, X, view1)
    return W - eta * gW, E - eta_E * mask * gE, key, loss


class SGDRunner:
    """Online SGD: each step (sample, forward, backward, update) is one jitted call."""

    def __init__(self, params, W0, E0=None, *, batch=256, eta=1e-3, eta_E=None, head="offdiag",
                 seed=0):
        self.c = constants(params)
        self.N = int(batch)
        self.eta = float(eta)
        self.eta_E = self.eta / 10.0 if eta_E is None else float(eta_E)
        self.mask = jnp.asarray(head_mask_list(head, self.c.m), dtype=DTYPE)
        self.seed = int(seed)
        self.W0 = jnp.asarray(W0, dtype=DTYPE)
        self.E0 = jnp.eye(self.c.m, dtype=DTYPE) if E0 is None else jnp.asarray(E0, dtype=DTYPE)
        self.reset()

    def reset(self):
        self.W, self.E = self.W0, self.E0
        self.key = jax.random.PRNGKey(self.seed)

    def run(self, n_steps: int) -> float:
        W, E, key = self.W, self.E, self.key
        loss = jnp.zeros((), dtype=DTYPE)
        for _ in range(n_steps):
            W, E, key, loss = _sgd_step(W, E, key, self.c, self.N, self.mask, self.eta, self.eta_E)
        self.W, self.E, self.key = W, E, key
        return float(loss.block_until_ready())

    def state(self):
        return np.asarray(self.W), np.asarray(self.E)


def versions() -> dict:
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "jax_devices": [str(dv) for dv in jax.devices()]}
