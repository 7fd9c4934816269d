"""Peer baselines: what a researcher would write instead of theory-sim.

Two independent float64 implementations of the model in ``docs/model.md`` (the
project's model specification), one in PyTorch (eager mode) and one in JAX (jit):

* the population gradient step: autograd on section 6's closed-form loss, on the
  full weights ``W`` (m x d) with ``v_l = e_l`` (no reduced coordinates), with the
  stop-gradient of section 6 (the target branch's ``A^3`` inside ``N_j`` and all
  of ``DG_j`` are constants);
* one online mini-batch SGD step of section 3: materialised patches ``X`` (N, P, d),
  Bernoulli(1/2) view split, batch normalisation with centring over the batch and
  gradient through the online branch's batch statistics, stop-gradient on the
  target branch, loss ``sum_j (2 - 2 corr_j)``.

They read only plain attributes of a :class:`theory_sim.ModelParams` and derive the
data constants themselves (:func:`constants`), so that agreeing with theory-sim is
a real check (``tests/test_peers.py``). They are used by ``benchmarks/run.py``.
The heavy imports (torch, jax) live in the submodules; this module needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Constants:
    """Plain-Python constants of docs/model.md sections 1-6 for the Bernoulli(1/2) split."""

    d: int
    m: int
    L: int
    P: int
    k: int
    alpha: tuple
    pi: tuple
    sigma: float
    lam: tuple   # lambda_l = pi_l alpha_l^6
    kx: float    # E[n1 n2] = k (k - 1) / 4
    k2: float    # E[n1^2]  = k (k + 1) / 4
    mu: float    # E[#noise patches in a view] = (P - k) / 2

    @property
    def sigma2(self) -> float:
        return self.sigma * self.sigma


def constants(params) -> Constants:
    """Constants of a ``ModelParams``-like object (docs/model.md section 6, derived here).

    Only the paper's setting is supported by the peers: basis features
    ``v_l = e_l`` and the Bernoulli(1/2) view split.
    """
    if getattr(params, "features", "basis") != "basis":
        raise ValueError("the peers implement basis features v_l = e_l only")
    if getattr(params, "split", "bernoulli") != "bernoulli":
        raise ValueError("the peers implement the Bernoulli(1/2) view split only")
    alpha = tuple(float(a) for a in params.alpha)
    pi = tuple(float(p) for p in params.pi)
    k, P = int(params.k), int(params.P)
    return Constants(
        d=int(params.d), m=int(params.m), L=len(alpha), P=P, k=k, alpha=alpha, pi=pi,
        sigma=float(params.sigma),
        lam=tuple(p * a**6 for p, a in zip(pi, alpha, strict=True)),
        kx=k * (k - 1) / 4.0, k2=k * (k + 1) / 4.0, mu=(P - k) / 2.0,
    )


def head_mask_list(head: str, m: int) -> list:
    """Which entries of ``E`` are trained, as nested lists (1.0 trained, 0.0 fixed)."""
    if head == "offdiag":
        return [[0.0 if i == j else 1.0 for j in range(m)] for i in range(m)]
    if head == "frozen":
        return [[0.0] * m for _ in range(m)]
    if head == "full":
        return [[1.0] * m for _ in range(m)]
    raise ValueError(f"head must be offdiag, frozen or full (got {head!r})")
