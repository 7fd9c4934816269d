"""What every engine shares: the inputs the driver builds once per run, and the base class.

See ``theory_sim.engines`` (the package docstring) for the contract.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np

from ..core.variants import DEFAULT_VARIANT
from ..events import event_params
from ..model import check_weights, feature_vectors, head_mask, initial_weights, model_constants
from ..objective import variant_tuple
from ..params import DEFAULT_HEAD_TOL, ModelParams, TrainParams


class StepInputs(NamedTuple):
    """The run's constants, the same for every engine (built by :func:`step_inputs`).

    ``V`` (d, L) the features (``None`` where nothing of size ``d`` is allocated: the flow
    engine with ``init="reduced"``); ``E_mask`` (m, m) 1 where ``E`` trains; ``model`` the kernels'
    data constants ``(lam, kx, k2, mu, sigma2)``; ``rates = (eta, eta_E)``;
    ``stop = (tol, align_threshold, max_norm, check_every)`` (``tol < 0``: no early stop);
    ``event_params = (thr, thr2, head_tol)`` of the phase events (``core.events``);
    ``variant = (norm, stopgrad, target, tau)`` the kernels' ablation codes (``core.variants``,
    docs/model.md section 12; the default is the paper's model).
    """

    V: np.ndarray
    E_mask: np.ndarray
    model: tuple
    rates: tuple
    stop: tuple
    event_params: tuple
    variant: tuple = DEFAULT_VARIANT


def stop_rule(train: TrainParams) -> tuple:
    """The kernels' ``stop = (tol, align_threshold, max_norm, check_every)`` of a run."""
    tol = train.tol if train.steps is None else -1.0  # a fixed budget: no early stop
    return (tol, train.align_threshold, train.max_norm, train.check_interval)


def step_inputs(model: ModelParams, train: TrainParams) -> StepInputs:
    """The :class:`StepInputs` of a run (the same for every engine)."""
    V = None if train.init == "reduced" else np.ascontiguousarray(feature_vectors(model))
    return StepInputs(V=V, E_mask=head_mask(train.head, model.m),
                      model=model_constants(model), rates=(train.eta, train.eta_E), stop=stop_rule(train),
                      event_params=event_params(train.align_threshold, DEFAULT_HEAD_TOL),
                      variant=train_variant(train))


def train_variant(train: TrainParams) -> tuple:
    """The kernels' ``variant`` tuple of a run (docs/model.md section 12)."""
    return variant_tuple(train.norm, train.stopgrad, train.target, train.tau)


def is_default_variant(train: TrainParams) -> bool:
    """The paper's model: BN, stop-gradient, online target."""
    return (train.norm, train.stopgrad, train.target) == ("bn", "on", "online")


class Engine:
    """Base of every engine; a subclass fills in the class attributes and the methods
    marked *required* (the package docstring is the contract)."""

    name: ClassVar[str]
    help: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    first_chunk: ClassVar[int] = 16
    state_arrays: ClassVar[tuple[str, ...]] = ("coords",)
    variants: ClassVar[bool] = False
    """Runs every ablation of docs/model.md section 12 (else only the paper's model;
    ``engines.check_variant`` refuses the others)."""
    derived_state: ClassVar[tuple[str, ...]] = ()
    """State arrays that a checkpoint written before they existed may lack: the driver
    rebuilds them from ``init_state(W0)`` (valid for the paper's model, the only one then)."""
    optional_arrays: ClassVar[tuple[str, ...]] = ()
    continuous: ClassVar[bool] = False

    @classmethod
    def start(cls, model: ModelParams, train: TrainParams, inputs: StepInputs, W0, E0) -> tuple:
        """``(W0, state)`` of a fresh run: ``W(0)`` validated (seeded from ``train.seed`` when
        ``W0`` is None; ``None`` where the engine never materialises it) and the state arrays."""
        W0 = initial_weights(model, train.seed) if W0 is None else W0
        W0, _ = check_weights(W0, E0, model)
        return W0, cls.init_state(W0, inputs)

    @classmethod
    def check_memory(cls, model: ModelParams, train: TrainParams) -> None:
        """Raise ParamError (naming the fix) if this engine's arrays would not fit in memory."""

    @classmethod
    def init_state(cls, W0: np.ndarray, inputs: StepInputs) -> dict[str, np.ndarray]:
        """*Required.* The engine's checkpointed arrays at ``W(0) = W0`` (keys: ``state_arrays``)."""
        raise NotImplementedError

    def __init__(self, model: ModelParams, train: TrainParams, inputs: StepInputs,
                 state: dict[str, np.ndarray]):
        """Bind to ``state`` (owned, C-contiguous float64 arrays, advanced in place) and
        allocate scratch space; called for a fresh run and for a restored checkpoint alike."""
        self.model, self.train, self.inputs = model, train, inputs
        self.state = state

    def advance(self, E: np.ndarray, rec: tuple, rec_state: np.ndarray, events: tuple, n: int) -> int:
        """*Required.* Advance at most ``n`` steps in place, observing the phase ``events`` at
        every evaluated step; return a ``core._jit`` status code."""
        raise NotImplementedError

    def observe_final(self, E: np.ndarray, step: int, events: tuple) -> None:
        """*Required.* Observe the events of the current state (at ``step``, the budget)
        without stepping."""
        raise NotImplementedError

    def weights(self) -> np.ndarray:
        """*Required.* The current ``W`` (m, d), a new array."""
        raise NotImplementedError

    def target_weights(self) -> np.ndarray | None:
        """The current EMA target ``Wbar`` (m, d), a new array (``None``: no EMA target)."""
        return None
