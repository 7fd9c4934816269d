"""The unrolled m = L = 2 moments (the paper's case) equal the general loops."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from theory_sim.core.moments import loss_grad, loss_grad_2x2

REL = 1e-12  # both are the same formulas in a different summation order


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sigma=st.floats(0.2, 2.0), head_scale=st.floats(0.0, 0.5))
def test_unrolled_2x2_matches_general(seed, sigma, head_scale):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((2, 5))
    A = np.ascontiguousarray(W[:, :2])
    C = sigma**2 * W @ W.T
    E = np.eye(2) + head_scale * rng.standard_normal((2, 2))  # diagonal too: the "full" head
    lam = rng.uniform(0.5, 50.0, 2)
    kx, k2, mu = 3.0, 5.0, 6.0
    ref = [np.empty((2, 2)) for _ in range(3)] + [np.empty(2)]
    loss_ref = loss_grad(A, C, E, A, C, lam, kx, k2, mu, *ref)
    out = [np.empty((2, 2)) for _ in range(3)] + [np.empty(2)]
    loss = loss_grad_2x2(A, C, E, lam, kx, k2, mu, *out)  # outputs in loss_grad's order
    assert abs(loss - loss_ref) <= REL * (1.0 + abs(loss_ref))
    for got, want in zip(out, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=REL, atol=REL * np.abs(want).max())
