"""One status table and one outcome vocabulary (docs/model.md section 9).

Every engine's kernel stops with an integer code from ``core._jit``; this module is
the one place that pairs each code with the name a :class:`~theory_sim.results.Run`
carries and the words a user reads (diffrax's ``RESULTS`` is the model). The
outcome of a finished run (what it learned) has its own vocabulary, ``OUTCOMES``.
"""

from __future__ import annotations

from .core import _jit

RUN_STATUSES = ("converged", "max_steps", "diverged", "interrupted", "vanishing", "vanished")
"""What ``Run.status`` may be: why the run stopped (``vanishing``: the flow engine's stop
rule recognised a follower shrinking towards zero for ever, docs/model.md section 10;
``vanished``: without BN every ``|w_j|`` fell below ``VANISH_TOL`` times its start,
docs/model.md section 12)."""

STATUS_NAMES = {
    _jit.STATUS_RUNNING: "interrupted",  # a run still running when asked for its result
    _jit.STATUS_CONVERGED: "converged",
    _jit.STATUS_MAX_STEPS: "max_steps",
    _jit.STATUS_NONFINITE: "diverged",
    _jit.STATUS_RUNAWAY: "diverged",
    _jit.STATUS_DEGENERATE: "diverged",
    _jit.STATUS_MAX_FLOW_TIME: "max_steps",  # the flow engine's cap is in flow time
    _jit.STATUS_STEP_UNDERFLOW: "diverged",
    _jit.STATUS_VANISHING: "vanishing",
    _jit.STATUS_VANISHED: "vanished",
}
"""Kernel status code -> ``Run.status``."""

FAILURE_REASONS = {
    _jit.STATUS_NONFINITE: "the loss or gradient became NaN or infinite",
    _jit.STATUS_RUNAWAY: "a neuron's norm exceeded max_norm",
    _jit.STATUS_DEGENERATE: "a neuron's weights became exactly zero",
    _jit.STATUS_STEP_UNDERFLOW: "the adaptive step became too small to change the state "
                                "(the error control could not be met)",
}
"""Kernel failure code -> what went wrong, in words."""

OUTCOMES = ("diverse", "collapsed", "incomplete", "vanishing", "complete_collapse")
"""What a run learned: every neuron a feature and more than one feature (``diverse``),
every neuron the same feature (``collapsed``), not settled (``incomplete``), a neuron
without a feature shrinking away beside one that holds a feature (``vanishing``,
docs/model.md section 10), or nothing at all: every ``|w_j|`` fallen below
``core._jit.VANISH_TOL`` times its start, so that every output's second moment
``DF_j >= c sigma^6 |w_j|^6`` is ~0 too (``complete_collapse``, docs/model.md section 12). New labels go last,
so that the earlier indices keep their meaning."""
BN_OUTCOMES = tuple(oc for oc in OUTCOMES if oc != "complete_collapse")
"""The outcomes a run with batch normalisation can have (the paper's model, every flow run,
fig. 5 and the sweeps): with BN the loss is scale-invariant at ``E = I``, so no run can
shrink to ``W = 0`` (docs/model.md section 10)."""

VANISHED_MESSAGE = ("vanished at step {step}: every |w_j| fell below {tol:g} of its start "
                    "(W -> 0 is a fixed point without BN, docs/model.md section 12)")
"""``Run.message`` of a ``vanished`` run."""

RUNNING = _jit.STATUS_RUNNING
"""The kernels' code for a run that has not stopped."""


def divergence_message(code: int, train, step: int, *, options: tuple = ()) -> str:
    """Why a run diverged at ``step`` and which option to change.

    ``train``: the run's TrainParams; ``options``: the engine's own options
    (``engines.Engine.options``), e.g. ``("batch",)`` adds "raise --batch".
    """
    what = FAILURE_REASONS[code]
    if code == _jit.STATUS_RUNAWAY:
        what = f"{what}={train.max_norm:g}"
    fix = f"lower --eta (now {train.eta:g})"
    if train.head != "frozen" and train.eta_E > 0:
        fix += f" or --eta-E (now {train.eta_E:g})"
    if "batch" in options:
        fix += f", or raise --batch (now {train.batch})"
    return f"diverged at step {step}: {what}; {fix}"
