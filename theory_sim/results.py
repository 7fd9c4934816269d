"""The result of a simulation: a recorded trajectory plus everything needed to reproduce it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field, fields

import numpy as np

from .status import RUN_STATUSES as STATUSES


@dataclass(frozen=True, eq=False)
class Run:
    """A recorded training trajectory (``T`` points, ``m`` neurons, ``L`` features).

    Attributes
    ----------
    steps : (T,) step index of each point (the flow engine takes no steps of size ``eta``:
        there the nominal ``round(t / eta)`` of each recorded flow time ``t``).
    alignment : (T, m, L) ``c_jl = <w_j, v_l> / |w_j|`` (docs/model.md section 9).
    norms : (T, m) ``|w_j|``.
    E : (T, m, m) the prediction head.
    loss : (T,) exact population loss ``sum_j (2 - 2 rho_j)`` at the recorded weights
        (for the ``sgd`` engine too: a noise-free curve).
    rho : (T, m) population correlation of each output coordinate.
    gram : (T, m, m) ``W W^T``; with ``alignment`` and ``norms`` it fixes every
        closed-form observable (section 6 needs only ``A`` and ``C``).
    config : every model and training parameter, the seed and the package version.
    status : ``converged``, ``max_steps``, ``diverged`` or ``interrupted``.
    message : why the run stopped, in words (and what to change if it diverged).
    W0, W : (m, d) initial and final weights; ``E_final`` (m, m) the final head.
    events : the phase events observed at every step (``theory_sim.events``: the arrays
        of ``EVENT_ARRAYS`` plus ``last`` evaluated step, ``align_threshold`` and
        ``head_tol``), or ``None`` (a file or checkpoint from before they were tracked);
        ``analysis.phase_times`` reads them when its threshold and head_tol match. Times
        are steps, or flow times when ``events["unit"] == "flow_time"`` (the flow engine).
    time : (T,) flow time of each point where it is not ``eta * steps`` (the flow engine),
        else ``None``; read it as :attr:`flow_time`.
    stats : solver statistics of the flow engine (``n_rhs``, ``accepted_steps``,
        ``rejected_steps``, ``stiff_steps``, ``switches``, ``jacobians``, ``output_evals``),
        else ``None``.
    W_target : (m, d) the final EMA target weights ``Wbar`` (``target="ema"``, docs/model.md
        section 12), else ``None``.
    """

    steps: np.ndarray
    alignment: np.ndarray
    norms: np.ndarray
    E: np.ndarray
    loss: np.ndarray
    rho: np.ndarray
    gram: np.ndarray
    config: dict
    status: str
    message: str = ""
    W0: np.ndarray = field(default=None, repr=False)
    W: np.ndarray = field(default=None, repr=False)
    E_final: np.ndarray = field(default=None, repr=False)
    elapsed: float = float("nan")
    events: dict | None = field(default=None, repr=False)
    time: np.ndarray | None = field(default=None, repr=False)
    stats: dict | None = field(default=None, repr=False)
    W_target: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)} (got {self.status!r})")

    @property
    def eta(self) -> float:
        return float(self.config["train"]["eta"])

    @property
    def engine(self) -> str:
        return str(self.config["train"].get("engine", "population"))

    @property
    def flow_time(self) -> np.ndarray:
        """(T,) flow time of each point: the time axis on which runs at different ``eta``
        and every engine agree (``eta * steps`` for the discrete engines)."""
        return self.eta * self.steps if self.time is None else self.time

    @property
    def A(self) -> np.ndarray:
        """(T, m, L) ``<w_j, v_l>``."""
        return self.alignment * self.norms[:, :, None]

    @property
    def n_points(self) -> int:
        return int(self.steps.shape[0])

    def __repr__(self):
        return (f"Run(status={self.status!r}, points={self.n_points}, "
                f"last_step={int(self.steps[-1]) if self.n_points else None})")


@dataclass(frozen=True)
class PhaseTimes:
    """Phase times (``None`` where the event did not happen) and the roles.

    T1: some neuron (the leader) learns ``v_1``; T2: peak of ``|E_{follower,leader}|``;
    T3: the follower learns ``v_2``; T4: first time after T3 that ``|E - I|_F < head_tol``.
    ``T1..T4`` are in steps (the flow engine: nominal steps ``round(t / eta)``), and
    ``T1_flow..T4_flow`` (keyword-only) in flow time, for every engine: ``eta * step`` for
    the discrete engines, the located event times for the flow engine.
    """

    T1: int | None
    T2: int | None
    T3: int | None
    T4: int | None
    leader: int | None
    follower: int | None
    _: KW_ONLY
    T1_flow: float | None = None
    T2_flow: float | None = None
    T3_flow: float | None = None
    T4_flow: float | None = None

    def as_dict(self) -> dict:
        """``T1..T4`` (steps), leader and follower; :meth:`flow_times` has the flow times."""
        return {"T1": self.T1, "T2": self.T2, "T3": self.T3, "T4": self.T4,
                "leader": self.leader, "follower": self.follower}

    def flow_times(self) -> dict:
        """``{"T1": ..., "T4": ...}`` in flow time."""
        return {"T1": self.T1_flow, "T2": self.T2_flow, "T3": self.T3_flow, "T4": self.T4_flow}


_FLOW_FIELDS = ("T1_flow", "T2_flow", "T3_flow", "T4_flow")


@dataclass(frozen=True, eq=False)
class RunSummary(PhaseTimes, Mapping):
    """What ``simulate_many`` reports for one run: the final state and the events of
    docs/model.md section 9, without a trajectory.

    Also a read-only mapping (``summary["T1"]``, ``dict(summary)``, :meth:`as_dict`) for
    code written against the earlier plain dicts; ``W`` is a key only when it was asked for,
    ``stats`` only for flow runs; the flow times ``T1_flow..T4_flow`` are attributes (and
    :meth:`flow_times`), not keys.

    Attributes
    ----------
    status : ``converged``, ``max_steps``, ``diverged``, ``interrupted`` or ``vanishing``.
    steps, flow_time : where the run stopped (``flow_time = eta * steps``; the flow engine:
        the flow time reached and its nominal step ``round(flow_time / eta)``).
    T1, T2, T3, T4, leader, follower : the :class:`PhaseTimes` fields (steps, ``None``
        when not reached; 0-based neuron indices), at step resolution; ``T1_flow..T4_flow``
        the same in flow time (the flow engine: located on its dense output).
    alignment : (m, L) final ``|c_jl|``; ``features``: the feature each neuron learned, or ``None``.
    peak_offdiag : (m, m) ``max_t |E_jr|`` (0 on the diagonal); ``E``: (m, m) final head;
    head_distance : final ``|E - I|_F``; ``loss``: final population loss.
    outcome : ``diverse``, ``collapsed`` or ``incomplete`` (``outcome.outcome_from``).
    W : (m, d) final weights, or ``None`` when not asked for (or never materialised).
    stats : the flow engine's solver statistics (as ``Run.stats``), else ``None``.
    """

    status: str
    steps: int
    flow_time: float
    alignment: np.ndarray
    features: list
    peak_offdiag: np.ndarray
    E: np.ndarray
    head_distance: float
    loss: float
    outcome: str
    W: np.ndarray | None = field(default=None, repr=False)
    stats: dict | None = field(default=None, repr=False)

    __eq__ = object.__eq__  # arrays inside: identity, not PhaseTimes' field comparison
    __hash__ = object.__hash__

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)} (got {self.status!r})")

    def _keys(self):
        optional = ("W", "stats")  # keys only when present; the flow times are attributes only
        return [f.name for f in fields(self) if f.name not in _FLOW_FIELDS
                and (f.name not in optional or getattr(self, f.name) is not None)]

    def __getitem__(self, key):
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._keys())

    def __len__(self):
        return len(self._keys())

    def as_dict(self) -> dict:
        """A plain dict of the same keys and values."""
        return {k: getattr(self, k) for k in self._keys()}

    def __repr__(self):
        return f"RunSummary(status={self.status!r}, steps={self.steps}, outcome={self.outcome!r})"
