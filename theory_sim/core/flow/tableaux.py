"""Butcher tableaux of the flow solver, as data (``explicit.py`` and ``rosenbrock.py`` run them).

* Dormand-Prince 5(4) (Hairer, Norsett & Wanner, Solving ODEs I, II.5): 7 stages, FSAL (the last
  stage is evaluated at the new solution: ``b`` is the last row of ``a``), an error estimate
  ``e = b - b_hat`` and Hairer's order-4 dense output ``d`` (``contd5``).
* Rosenbrock methods in Hairer's transformed form (Hairer & Wanner, Solving ODEs II, IV.7):
  ``(I/(h gamma) - J) u_i = f(y + sum_{j<i} a_ij u_j) + sum_{j<i} c_ij u_j / h``,
  ``y_new = y + sum m_i u_i``, error estimate ``sum e_i u_i``; stacked over the methods
  (``ROS_*[STIFF_*]``), padded to 6 stages.
"""

from __future__ import annotations

import numpy as np


def _dp5():
    a = np.zeros((7, 7))
    a[1, 0] = 0.2
    a[2, :2] = (3.0 / 40.0, 9.0 / 40.0)
    a[3, :3] = (44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0)
    a[4, :4] = (19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0)
    a[5, :5] = (9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0)
    a[6, :6] = (35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0)
    c = np.array([0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0])
    e = np.array([71.0 / 57600.0, 0.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0,
                  22.0 / 525.0, -1.0 / 40.0])
    d = np.array([-12715105075.0 / 11282082432.0, 0.0, 87487479700.0 / 32700410799.0,
                  -10690763975.0 / 1880347072.0, 701980252875.0 / 199316789632.0,
                  -1453857185.0 / 822651844.0, 69997945.0 / 29380423.0])
    return a, c, e, d


DP5_A, DP5_C, DP5_E, DP5_D = _dp5()
DP5_KORD = 5.0
"""Order of DP5's error estimate plus one (the controller's exponent)."""
DP5_COST = 6.0
"""Evaluations per DP5 step (FSAL: the first stage is the last step's last)."""

STIFF_RODAS4 = 0
"""Rodas4 (Hairer & Wanner): 6 stages, order 4 (embedded 3), L-stable, stiffly accurate,
order-3 dense output. Needs the exact Jacobian (it is not a W-method): ``jac_every = 1``."""
STIFF_ROS34PW2 = 1
"""ROS34PW2 (Rang & Angermann 2005): 4 stages, W-method of order 3 (embedded 2), L-stable,
stiffly accurate: keeps its order with a Jacobian reused over several steps."""


def _rodas4():
    a = np.zeros((6, 6))
    c = np.zeros((6, 6))
    a[1, 0] = 1.544
    a[2, :2] = (0.9466785280815826, 0.2557011698983284)
    a[3, :3] = (3.314825187068521, 2.896124015972201, 0.9986419139977817)
    a[4, :4] = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)
    a[5, :5] = (*a[4, :4], 1.0)
    c[1, 0] = -5.6688
    c[2, :2] = (-2.430093356833875, -0.2063599157091915)
    c[3, :3] = (-0.1073529058151375, -9.594562251023355, -20.47028614809616)
    c[4, :4] = (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160)
    c[5, :5] = (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
                -6.058818238834054)
    m = np.append(a[5, :5], 1.0)
    e = np.zeros(6)
    e[5] = 1.0
    hd = np.array([[10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
                    1.025137723295662, 0.0],
                   [-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
                    -6.594389125716872, 0.0]])
    return 0.25, a, c, m, e, hd


def _ros34pw2():
    """From the published (alpha, Gamma, b, b_hat) form: a = alpha Gamma^-1,
    c = diag(1/gamma) - Gamma^-1, m = b Gamma^-1, e = (b - b_hat) Gamma^-1."""
    gam = 4.3586652150845900e-01
    al = np.zeros((4, 4))
    G = np.eye(4) * gam
    al[1, 0] = 8.7173304301691801e-01
    al[2, :2] = (8.4457060015369423e-01, -1.1299064236484185e-01)
    al[3, 2] = 1.0
    G[1, 0] = -8.7173304301691801e-01
    G[2, :2] = (-9.0338057013044082e-01, 5.4180672388095326e-02)
    G[3, :3] = (2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01)
    b = np.array([2.4212380706095346e-1, -1.2232505839045147, 1.5452602553351020, gam])
    bh = np.array([3.7810903145819369e-1, -9.6042292212423178e-2, 0.5, 2.1793326075422950e-1])
    Gi = np.linalg.inv(G)
    a, c = np.zeros((6, 6)), np.zeros((6, 6))
    a[:4, :4] = al @ Gi
    c[:4, :4] = np.diag(np.diag(Gi)) - Gi
    m, e = np.zeros(6), np.zeros(6)
    m[:4], e[:4] = b @ Gi, (b - bh) @ Gi
    return gam, a, c, m, e, np.zeros((2, 6))


_TABS = (_rodas4(), _ros34pw2())
ROS_GAMMA = np.array([t[0] for t in _TABS])
ROS_A = np.array([t[1] for t in _TABS])
ROS_C = np.array([t[2] for t in _TABS])
ROS_M = np.array([t[3] for t in _TABS])
ROS_E = np.array([t[4] for t in _TABS])
ROS_H = np.array([t[5] for t in _TABS])
ROS_S = np.array([6, 4], dtype=np.int64)           # stages = evaluations per step (FSAL included)
ROS_KORD = np.array([4.0, 3.0])                     # order of the error estimate + 1
ROS_OWN_DENSE = np.array([True, False])            # else cubic Hermite on (y, f, y_new, f_new)

__all__ = [name for name in dir() if name.isupper() and not name.startswith("_")]
