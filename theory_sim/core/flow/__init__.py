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

from . import state, tableaux
from .events import _record
from .solver import flow_advance, flow_init
from .state import *  # noqa: F403  (the layout and the groups: every caller's names)
from .tableaux import *  # noqa: F403

__all__ = ["flow_init", "flow_advance", "_record", *state.__all__, *tableaux.__all__]
