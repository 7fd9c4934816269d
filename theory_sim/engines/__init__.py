"""The engines: one module per engine behind one interface, and the one registry.

``ENGINES`` maps each ``TrainParams.engine`` name to its class; ``params``, the CLI and
the sweeps read the list of engines from here, and :class:`~theory_sim.driver.Simulation`
drives any of them the same way (it never branches on the name).

Adding an engine (e.g. ``flow``) means adding ``engines/flow.py`` and one entry below.
The module defines a subclass of :class:`~theory_sim.engines.base.Engine` with:

class attributes
    ``name`` (str): the registry key and the ``--engine`` value.
    ``help`` (str): one line for ``--help``.
    ``options`` (tuple of str): the ``TrainParams`` fields it reads beyond the common
        ones (eta, eta_E, head, steps, seed, record, tol, align_threshold, max_norm,
        check_every, max_flow_time), e.g. ``("batch",)``; a divergence message suggests
        ``--batch`` only for engines that list it.
    ``first_chunk`` (int): steps in the first ``advance`` call; the driver then adapts the
        chunk to ~0.25 s per call.
    ``state_arrays`` (tuple of str): the keys of the checkpointed arrays, ``"coords"`` first
        (the checkpoint stores them under these names).

methods
    ``check_memory(model, train)`` (classmethod, optional): raise ``ParamError`` naming
        the fix if the engine's own arrays would not fit (the driver checks the record).
    ``init_state(W0, inputs) -> dict[str, ndarray]`` (classmethod): the checkpointed
        arrays at ``W(0) = W0`` ((m, d) float64, validated), keys ``state_arrays``.
        ``inputs`` is the run's :class:`~theory_sim.engines.base.StepInputs`
        ``(V, E_mask, model, rates, stop, event_params)``.
    ``__init__(model, train, inputs, state)``: bind to ``state`` (owned C-contiguous
        float64 arrays, advanced in place) and allocate scratch space; called for a fresh
        run and for a restored checkpoint alike (call ``super().__init__``, which sets
        ``self.model``, ``self.train``, ``self.inputs``, ``self.state``).
    ``advance(E, rec, rec_state, events, n) -> int``: advance at most ``n`` steps in place
        (``E`` (m, m) the head, also in place) and return a ``core._jit`` status code:
        ``STATUS_RUNNING`` if it did all ``n``, else why it stopped. The kernel keeps
        ``rec_state = [step, count, stride]`` and records points with
        ``core.population.record_point(rec, rec_state, step, A, gram, E, loss, rho)`` at
        steps that are multiples of the stride; ``rec_state[0]`` is the step reached. It
        stops with ``core.population.convergence_status`` / ``step_status`` codes. At
        every evaluated state (``A = W V``, ``gram = W W^T``) it calls
        ``core.events.observe_run(step, A, gram, E, events, inputs.event_params)`` (in a
        per-step loop, unpack ``events`` once and call ``core.events.observe`` as
        ``population_advance`` does): the phase times then have step resolution whatever
        ``record`` is (a continuous-time engine calls it at its own evaluation points, or
        locates the crossings). ``events = (first_v1, c_v1_at_first, first_v2,
        first_head_back, peak, peak_step, last_evaluated)`` (``theory_sim.events.new_events``);
        ``rec = (steps, alignment, norms, E, loss, rho, gram)`` (``record_point``).
    ``observe_final(E, step, events)``: evaluate the current state (the run reached its
        step budget) and call ``observe_run`` on it, without stepping.
    ``weights() -> ndarray``: the current ``W`` (m, d) as a new array (``None`` where the
        engine never materialises it: the flow engine with ``init="reduced"``).

    ``start(model, train, inputs, W0, E0) -> (W0, state)`` (classmethod): the base class
    seeds, validates and calls ``init_state``; an engine that draws ``W(0)`` otherwise (the
    flow engine's ``init="reduced"``) overrides it and returns ``W0 = None``.
    ``optional_arrays``: checkpointed arrays that not every run has.

Continuous-time engines (``continuous = True``, the flow engine) measure time in flow time
and own their records (``engines/flow.py`` says how): ``advance(..., n)`` makes ``n``
solver steps and sets ``rec_state[0]`` to the accepted steps; the driver reads ``time``,
``status`` (the kernel's code), ``records()`` ``(t, A, gram, E, loss, rho)``,
``events_record()`` (times in flow time, ``"unit": "flow_time"``), ``stats()`` and
``progress_info()`` (with the flow-time ``cap``) instead of the step arrays. For every engine
``Run.flow_time`` is the time axis and the phase times are reported in flow time
(``PhaseTimes.flow``); discrete engines also in steps (exact), the flow engine in nominal
steps ``round(t / eta)``.
"""

from __future__ import annotations

from ..params import ParamError
from .base import Engine, StepInputs, is_default_variant, step_inputs, stop_rule
from .flow import FlowEngine
from .population import PopulationEngine
from .sgd import SGDEngine
from .sgd_fast import SGDFastEngine

ENGINES: dict[str, type[Engine]] = {
    PopulationEngine.name: PopulationEngine,
    SGDEngine.name: SGDEngine,
    SGDFastEngine.name: SGDFastEngine,
    FlowEngine.name: FlowEngine,
}
"""Engine name -> engine class: the one list of engines."""


def check_variant(train) -> None:
    """Refuse, in one line, an ablation (docs/model.md section 12) that ``train.engine``
    does not run (its class has ``variants = False``), naming the engines that do."""
    if is_default_variant(train) or ENGINES[train.engine].variants:
        return
    able = ", ".join(name for name, eng in ENGINES.items() if eng.variants)
    raise ParamError(f"engine {train.engine!r} runs only the paper's model (norm=bn, stopgrad=on, "
                     f"target=online); use --engine {able} for norm={train.norm}, stopgrad={train.stopgrad}, "
                     f"target={train.target}")

__all__ = ["ENGINES", "Engine", "FlowEngine", "PopulationEngine", "SGDEngine", "SGDFastEngine", "StepInputs",
           "check_variant", "step_inputs", "stop_rule"]
