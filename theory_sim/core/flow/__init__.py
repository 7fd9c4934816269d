"""Adaptive integration of the population gradient flow in reduced coordinates.

docs/model.md sections 7 and 11: as ``eta -> 0`` the population engine follows the ODE
``dB/dt = -dL/dB``, ``dE/dt = -(eta_E/eta) mask * dL/dE`` in flow time ``t = eta * steps``,
with the closed-form gradient of ``population_step`` (section 6). The state is the flat
vector ``y = (B.ravel(), E.ravel())`` of length ``n = m r + m^2``.

One module per part:

* ``state``: the layout of the solver's arrays (``F_*``, ``I_*``, ``O_*``) and the named groups
  (``Problem``, ``Solver``, ``Events``, ``Records``; ``Work``: scratch) the kernels take;
* ``tableaux``: Dormand-Prince 5(4) and the Rosenbrock methods (Rodas4, ROS34PW2), as data;
* ``explicit``: one generic explicit Runge-Kutta stepper (FSAL, Hairer's dense output), for the
  non-stiff phases I-IV;
* ``rosenbrock``: the Rosenbrock stepper for stiff stretches, with its Jacobian reuse;
* ``controller``: the error norm, the PI step-size controller, the starting step;
* ``stiffness``: Hairer's ``h |lambda|`` count, the stall check by spectral radius, switching
  back (both directions, in the manner of LSODA);
* ``events``: phase events and records on each accepted step's dense interpolant;
* ``rhs``: the right-hand side, its Jacobian, and the exact identities that keep round-off out;
* ``termination``: why a run stops, one function with an explicit precedence;
* ``solver``: the entry kernels ``flow_init`` and ``flow_advance``.

Numba flags live in ``core._jit``. Everything the solver carries between steps lives in the
caller's arrays, so a run split into many calls ends bit-identical to one call, and a checkpoint
is a copy of those arrays (``engines.flow`` owns them and is the one place that drives the loop).
"""

from .events import _record
from .solver import (
    flow_advance,
    flow_init,
)
from .state import (
    ARRAY_KEYS,
    EVENT_KEYS,
    F_ERRPREV,
    F_H,
    F_HREF,
    F_HSTAB,
    F_LOSS,
    F_SPEEDE,
    F_SPEEDW,
    F_T,
    F_TLO,
    I_INIT,
    I_JACAGE,
    I_LASTFAIL,
    I_MODE,
    I_NCHECK,
    I_NJAC,
    I_NNONSTIFF,
    I_NOUT,
    I_NREC,
    I_NREJECT,
    I_NRHS,
    I_NSTEPS,
    I_NSTIFF,
    I_NSTIFFSTEPS,
    I_NSWITCH,
    I_REJECTED,
    I_STATUS,
    MODE_EXPLICIT,
    MODE_ROSENBROCK,
    N_FST,
    N_IST,
    N_OPTS,
    O_ALIGN,
    O_ATOL,
    O_HEADTOL,
    O_HMAX,
    O_JACEVERY,
    O_MAXNORM,
    O_RTOL,
    O_STIFFMETHOD,
    O_TMAX,
    O_TOL,
    O_VACCEL,
    O_VHEAD,
    O_VPERSIST,
    O_VSHRINK,
    RECORD_KEYS,
    SOLVER_KEYS,
    Events,
    Problem,
    Records,
    Solver,
    Work,
    pack,
)
from .tableaux import (
    DP5_A,
    DP5_C,
    DP5_D,
    DP5_E,
    DP5_KORD,
    ROS_A,
    ROS_C,
    ROS_E,
    ROS_GAMMA,
    ROS_H,
    ROS_KORD,
    ROS_M,
    ROS_OWN_DENSE,
    ROS_S,
    STIFF_RODAS4,
    STIFF_ROS34PW2,
)

__all__ = [
    "flow_init", "flow_advance", "_record", "ARRAY_KEYS", "EVENT_KEYS", "Events", "F_ERRPREV", "F_H",
    "F_HREF", "F_HSTAB", "F_LOSS", "F_SPEEDE", "F_SPEEDW", "F_T", "F_TLO", "I_INIT", "I_JACAGE",
    "I_LASTFAIL", "I_MODE", "I_NCHECK", "I_NJAC", "I_NNONSTIFF", "I_NOUT", "I_NREC", "I_NREJECT",
    "I_NRHS", "I_NSTEPS", "I_NSTIFF", "I_NSTIFFSTEPS", "I_NSWITCH", "I_REJECTED", "I_STATUS",
    "MODE_EXPLICIT", "MODE_ROSENBROCK", "N_FST", "N_IST", "N_OPTS", "O_ALIGN", "O_ATOL", "O_HEADTOL",
    "O_HMAX", "O_JACEVERY", "O_MAXNORM", "O_RTOL", "O_STIFFMETHOD", "O_TMAX", "O_TOL", "O_VACCEL",
    "O_VHEAD", "O_VPERSIST", "O_VSHRINK", "Problem", "RECORD_KEYS", "Records", "SOLVER_KEYS", "Solver",
    "Work", "pack", "DP5_A", "DP5_C", "DP5_D", "DP5_E", "DP5_KORD", "ROS_A", "ROS_C", "ROS_E", "ROS_GAMMA",
    "ROS_H", "ROS_KORD", "ROS_M", "ROS_OWN_DENSE", "ROS_S", "STIFF_RODAS4", "STIFF_ROS34PW2",
]
