"""PyTorch (eager, float64, CPU) peer of theory-sim: see ``benchmarks/peers/__init__.py``.

Written the way a researcher would: the closed-form population loss of docs/model.md
section 6 on the full ``W`` (m x d) differentiated by autograd, and a vectorised
mini-batch SGD step of section 3 on materialised patches. No reduced coordinates,
no hand-written gradients.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Constants, constants, head_mask_list

DTYPE = torch.float64


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=DTYPE)


# ---------------------------------------------------------------- population (section 6)

def population_loss_t(W: torch.Tensor, E: torch.Tensor, c: Constants, lam: torch.Tensor,
                      target: torch.Tensor | None = None) -> torch.Tensor:
    """Closed-form population loss ``sum_j (2 - 2 rho_j)`` with the stop-gradient of section 6.

    ``target`` (default ``W``) gives the weights of the target branch; it is detached
    either way, so ``A3`` of ``G`` inside ``N_j`` and all of ``DG_j`` are constants.
    """
    Wt = (W if target is None else target).detach()
    A = W[:, : c.L]                       # A_jl = <w_j, v_l>, v_l = e_l
    At3 = Wt[:, : c.L] ** 3               # target branch, constant
    C = c.sigma2 * (W @ W.T)              # covariance of u = W xi
    dC = torch.diagonal(C)
    M = 9.0 * dC[:, None] * dC[None, :] * C + 6.0 * C**3
    H = E @ A**3
    N = c.kx * (lam * H * At3).sum(1)
    DF = c.k2 * (lam * H**2).sum(1) + c.mu * ((E @ M) * E).sum(1)
    Ct_diag = c.sigma2 * (Wt * Wt).sum(1)
    DG = c.k2 * (lam * At3**2).sum(1) + c.mu * 15.0 * Ct_diag**3
    rho = N / torch.sqrt(DF * DG)
    return (2.0 - 2.0 * rho).sum()


def population_loss_grad(W, E, params, target=None):
    """``(loss, dL/dW, dL/dE)`` as NumPy arrays (``dL/dE`` unmasked), for the tests."""
    c = constants(params)
    lam = _t(c.lam)
    Wt = _t(W).requires_grad_(True)
    Et = _t(E).requires_grad_(True)
    tgt = None if target is None else _t(target)
    loss = population_loss_t(Wt, Et, c, lam, tgt)
    gW, gE = torch.autograd.grad(loss, (Wt, Et))
    return loss.item(), gW.numpy(), gE.numpy()


class PopulationRunner:
    """Gradient descent on the population loss: ``run(n)`` is a plain Python loop of eager steps."""

    def __init__(self, params, W0, E0=None, *, eta=1e-3, eta_E=None, head="offdiag"):
        self.c = constants(params)
        self.lam = _t(self.c.lam)
        self.eta = float(eta)
        self.eta_E = self.eta / 10.0 if eta_E is None else float(eta_E)
        self.mask = _t(head_mask_list(head, self.c.m))
        self.W0 = _t(W0)
        self.E0 = torch.eye(self.c.m, dtype=DTYPE) if E0 is None else _t(E0)
        self.W = self.W0.clone().requires_grad_(True)
        self.E = self.E0.clone().requires_grad_(True)

    def reset(self):
        with torch.no_grad():
            self.W.copy_(self.W0)
            self.E.copy_(self.E0)

    def run(self, n_steps: int) -> float:
        loss = torch.zeros((), dtype=DTYPE)
        W, E, c, lam, mask = self.W, self.E, self.c, self.lam, self.mask
        for _ in range(n_steps):
            loss = population_loss_t(W, E, c, lam)
            gW, gE = torch.autograd.grad(loss, (W, E))
            with torch.no_grad():
                W.sub_(self.eta * gW)
                E.sub_(self.eta_E * mask * gE)
        return loss.item()

    def state(self):
        return self.W.detach().numpy().copy(), self.E.detach().numpy().copy()


# ---------------------------------------------------------------- SGD (section 3)

def sgd_loss_t(W: torch.Tensor, E: torch.Tensor, X: torch.Tensor, view1: torch.Tensor) -> torch.Tensor:
    """Batch loss ``(1/N) sum_i |BN(F)(X_i^(1)) - SG[BN(G)(X_i^(2))]|^2 = sum_j (2 - 2 corr_j)``.

    ``X`` (N, P, d) patches, ``view1`` (N, P) bool. Batch normalisation centres over
    the batch and divides by the biased standard deviation; the online branch's
    statistics are differentiated through, the target branch is detached.
    """
    cube = (X @ W.T) ** 3                   # (N, P, m): sigma(<w_j, X_p>)
    v1 = view1.unsqueeze(-1).to(DTYPE)
    f1 = (cube * v1).sum(1)                 # f(X^(1)), (N, m)
    f2 = (cube * (1.0 - v1)).sum(1).detach()  # f(X^(2)), target branch
    F = f1 @ E.T                            # online branch E f(X^(1))
    Fh = (F - F.mean(0)) / F.var(0, correction=0).sqrt()
    Gh = (f2 - f2.mean(0)) / f2.var(0, correction=0).sqrt()
    return ((Fh - Gh) ** 2).sum(1).mean()


def sgd_loss_grad(W, E, X, view1):
    """``(loss, dL/dW, dL/dE)`` on a given batch, as NumPy arrays (``dL/dE`` unmasked)."""
    Wt = _t(W).requires_grad_(True)
    Et = _t(E).requires_grad_(True)
    loss = sgd_loss_t(Wt, Et, _t(X), torch.as_tensor(np.asarray(view1, dtype=bool)))
    gW, gE = torch.autograd.grad(loss, (Wt, Et))
    return loss.item(), gW.numpy(), gE.numpy()


def sample_batch(c: Constants, N: int, gen: torch.Generator, alpha: torch.Tensor, pi: torch.Tensor):
    """A fresh batch of docs/model.md sections 1-2: ``X`` (N, P, d) and ``view1`` (N, P) bool.

    Feature index ``l ~ pi``, sign uniform, a uniform k-subset of feature patches
    carrying ``s alpha_l e_l``, the other patches ``N(0, sigma^2 I_d)``; each patch
    in view 1 with probability 1/2.
    """
    P, k, d = c.P, c.k, c.d
    label = torch.multinomial(pi, N, replacement=True, generator=gen)
    sign = torch.randint(0, 2, (N,), generator=gen, dtype=DTYPE) * 2.0 - 1.0
    order = torch.rand(N, P, generator=gen).argsort(1)
    feat = torch.zeros(N, P, dtype=torch.bool).scatter_(1, order[:, :k], True)
    view1 = torch.rand(N, P, generator=gen) < 0.5
    X = torch.empty(N, P, d, dtype=DTYPE)
    X[~feat] = c.sigma * torch.randn(N * (P - k), d, generator=gen, dtype=DTYPE)
    signal = torch.zeros(N, d, dtype=DTYPE)
    signal[torch.arange(N), label] = sign * alpha[label]
    X[feat] = signal.repeat_interleave(k, dim=0)   # rows of X[feat] are in sample order
    return X, view1


class SGDRunner:
    """Online SGD: each step draws a fresh batch, back-propagates the batch loss, updates."""

    def __init__(self, params, W0, E0=None, *, batch=256, eta=1e-3, eta_E=None, head="offdiag",
                 seed=0):
        self.c = constants(params)
        self.N = int(batch)
        self.eta = float(eta)
        self.eta_E = self.eta / 10.0 if eta_E is None else float(eta_E)
        self.mask = _t(head_mask_list(head, self.c.m))
        self.alpha = _t(self.c.alpha)
        self.pi = _t(self.c.pi)
        self.seed = int(seed)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.W0 = _t(W0)
        self.E0 = torch.eye(self.c.m, dtype=DTYPE) if E0 is None else _t(E0)
        self.W = self.W0.clone().requires_grad_(True)
        self.E = self.E0.clone().requires_grad_(True)

    def reset(self):
        self.gen.manual_seed(self.seed)
        with torch.no_grad():
            self.W.copy_(self.W0)
            self.E.copy_(self.E0)

    def run(self, n_steps: int) -> float:
        loss = torch.zeros((), dtype=DTYPE)
        W, E = self.W, self.E
        for _ in range(n_steps):
            X, view1 = sample_batch(self.c, self.N, self.gen, self.alpha, self.pi)
            loss = sgd_loss_t(W, E, X, view1)
            gW, gE = torch.autograd.grad(loss, (W, E))
            with torch.no_grad():
                W.sub_(self.eta * gW)
                E.sub_(self.eta_E * self.mask * gE)
        return loss.item()

    def state(self):
        return self.W.detach().numpy().copy(), self.E.detach().numpy().copy()


def versions() -> dict:
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
