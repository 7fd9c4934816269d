"""What the flow solver carries between calls: the layout of its scalar arrays and the named
groups its kernels take.

Everything lives in arrays that the caller owns (``engines.flow`` keeps them in a dict,
checkpointed as is), so a run split into many calls ends bit-identical to one call. The kernels
take them in five named groups (numba-compatible namedtuples) instead of two dozen positional
arrays; :func:`pack` builds the groups from the engine's dict.
"""

from __future__ import annotations

from collections import namedtuple

# fst (float64): solver scalars
F_T = 0          # current flow time
F_H = 1          # next step size to try
F_ERRPREV = 2    # previous accepted error norm (PI memory)
F_LOSS = 3       # loss at the current point
F_SPEEDW = 4     # flow speed of W at the current point (population_step's speed_w)
F_SPEEDE = 5     # |mask * dL/dE|_F^2 at the current point
F_HSTAB = 6      # explicit stability limit from the last Jacobian (Rosenbrock mode)
F_TLO = 7        # Kahan compensation of F_T: steps far below eps * t still add up
F_HREF = 8       # explicit step size at the last stall check
N_FST = 9
# ist (int64): solver counters and flags
I_STATUS = 0     # STATUS_RUNNING until the run stops
I_MODE = 1       # MODE_EXPLICIT or MODE_ROSENBROCK
I_NSTIFF = 2     # stability-limited explicit steps counted towards a switch
I_NNONSTIFF = 3  # consecutive unflagged explicit steps
I_NRHS = 4       # right-hand-side evaluations (Jacobian columns included)
I_NSTEPS = 5     # accepted steps
I_NREJECT = 6    # rejected steps
I_NREC = 7       # records written (index of the next requested time)
I_JACAGE = 8     # accepted steps since the Jacobian was computed (-1: none)
I_NJAC = 9       # Jacobians computed
I_REJECTED = 10  # 1 if the last attempt was rejected
I_LASTFAIL = 11  # status code of the last failed stage (for the underflow diagnosis)
I_NSWITCH = 12   # method switches
I_NSTIFFSTEPS = 13  # accepted Rosenbrock steps
I_NOUT = 14      # evaluations made for output records only (not in I_NRHS)
I_INIT = 15      # 1 once flow_init has run
I_NCHECK = 16    # accepted explicit steps since the last stall check
N_IST = 17
# opts (float64): tolerances and stop rules
O_RTOL = 0
O_ATOL = 1
O_TMAX = 2
O_TOL = 3           # convergence speed (core.population.convergence_status)
O_ALIGN = 4         # alignment threshold
O_MAXNORM = 5       # runaway norm
O_HEADTOL = 6       # |E - I|_F tolerance of T4
O_VPERSIST = 7      # vanishing rule: t >= persist * t0
O_VSHRINK = 8       # vanishing rule: |w_f| <= shrink * |w_f(t0)|
O_HMAX = 9          # largest step (inf: none)
O_JACEVERY = 10     # Rosenbrock: recompute J after this many accepted steps
O_VACCEL = 11       # vanishing rule: largest growth of the log-log alignment slope in the window
O_STIFFMETHOD = 12  # STIFF_RODAS4 or STIFF_ROS34PW2
O_VHEAD = 13        # vanishing rule, fast path: |E_fq| at which a held window fires at once
N_OPTS = 14

MODE_EXPLICIT = 0
MODE_ROSENBROCK = 1

Problem = namedtuple("Problem", ("Vr", "E_mask", "model", "ratio"))
"""The run's constants: ``Vr`` (r, L) the features in the reduced basis, ``E_mask`` (m, m) the
trained entries of ``E``, ``model = (lam, kx, k2, mu, sigma2)``, ``ratio = eta_E / eta``."""
Solver = namedtuple("Solver", ("y", "f0", "J", "fst", "ist", "inv"))
"""The integrator: ``y`` (n,) the state ``(B.ravel(), E.ravel())``, ``f0`` (n,) ``dy/dt`` at ``y``
(FSAL), ``J`` (n, n) the Jacobian kept by Rosenbrock mode, ``fst`` (N_FST,) / ``ist`` (N_IST,) the
scalars (``F_*`` / ``I_*``), ``inv`` (m + 1,) the conserved norms (each row's, then all of ``B``'s)."""
Events = namedtuple("Events", ("t1", "t2", "t4", "peak", "peak_t", "vstate"))
"""Phase events (flow time, -1: never): ``t1, t2, t4`` (m,), ``peak, peak_t`` (m, m), and the
vanishing test's ``vstate`` (3, m) = ``(t0, |w_f(t0)|, kappa(t0))`` per neuron (``t0 < 0``: off)."""
Records = namedtuple("Records", ("t", "A", "gram", "E", "loss", "rho"))
"""Records at the increasing flow times ``t`` (K,): ``A`` (K, m, L), ``gram`` (K, m, m),
``E`` (K, m, m), ``loss`` (K,), ``rho`` (K, m)."""

Work = namedtuple("Work", ("Bb", "Eb", "ws", "A", "nrm", "fbuf", "tmp", "ytmp", "y_last", "y1", "errv",
                           "k", "dense", "samples", "Wm", "piv"))
"""Scratch space of one kernel call (``solver._scratch``): ``Bb`` (m, r), ``Eb`` (m, m) and ``ws``
(``population.make_workspace``) for the right-hand side; ``A`` (m, L), ``nrm`` (m,) for the events;
(n,) vectors ``fbuf``, ``tmp``, ``ytmp`` (stage inputs), ``y_last`` (the input of the last explicit
stage but one), ``y1`` (the step's new point), ``errv`` (its error estimate); the stages ``k`` (7, n)
(row 6: ``f(y1)``), the dense output ``dense`` (5, n) and its ``samples`` (N_SAMPLES + 1, n); the
Rosenbrock matrix ``Wm`` (n, n) and its pivots ``piv``."""

SOLVER_KEYS = Solver(y="coords", f0="rhs", J="jacobian", fst="fst", ist="ist", inv="invariants")
EVENT_KEYS = Events(t1="t1", t2="t2", t4="t4", peak="peak", peak_t="peak_t", vstate="vstate")
RECORD_KEYS = Records(t="t_rec", A="rec_A", gram="rec_gram", E="rec_E", loss="rec_loss", rho="rec_rho")
ARRAY_KEYS = (SOLVER_KEYS.y, SOLVER_KEYS.f0, SOLVER_KEYS.J, "features_r", "opts", SOLVER_KEYS.fst,
              SOLVER_KEYS.ist, *EVENT_KEYS[:5], EVENT_KEYS.vstate, SOLVER_KEYS.inv, *RECORD_KEYS)
"""The keys of a run's arrays (``engines.flow``'s state, what a checkpoint holds), in a fixed order."""


def pack(arrays: dict, E_mask, model: tuple, ratio: float) -> tuple:
    """``(problem, opts, solver, events, records)`` of the kernels from a run's arrays (no copies)."""
    prob = Problem(arrays["features_r"], E_mask, tuple(model), float(ratio))
    return (prob, arrays["opts"], Solver(*(arrays[k] for k in SOLVER_KEYS)),
            Events(*(arrays[k] for k in EVENT_KEYS)), Records(*(arrays[k] for k in RECORD_KEYS)))

__all__ = [name for name in dir() if name.isupper() or name in ("Problem", "Solver", "Events", "Records",
                                                                  "Work", "pack")]
