"""The result of a simulation: a recorded trajectory plus everything needed to reproduce it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from .status import RUN_STATUSES as STATUSES


@dataclass(frozen=True, eq=False)
class Run:
    """A recorded training trajectory (``T`` points, ``m`` neurons, ``L`` features).

    Attributes
    ----------
    steps : (T,) step index of each point.
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
        ``analysis.phase_times`` reads them when its threshold and head_tol match.
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
    W_target: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)} (got {self.status!r})")

    @property
    def eta(self) -> float:
        return float(self.config["train"]["eta"])

    @property
    def flow_time(self) -> np.ndarray:
        """``eta * steps``: the time axis on which runs at different ``eta`` agree."""
        return self.eta * self.steps

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
    """Phase times in steps (``None`` where the event did not happen) and the roles.

    T1: some neuron (the leader) learns ``v_1``; T2: peak of ``|E_{follower,leader}|``;
    T3: the follower learns ``v_2``; T4: first time after T3 that ``|E - I|_F < head_tol``.
    """

    T1: int | None
    T2: int | None
    T3: int | None
    T4: int | None
    leader: int | None
    follower: int | None

    def as_dict(self) -> dict:
        return {"T1": self.T1, "T2": self.T2, "T3": self.T3, "T4": self.T4,
                "leader": self.leader, "follower": self.follower}


@dataclass(frozen=True, eq=False)
class RunSummary(PhaseTimes, Mapping):
    """What ``simulate_many`` reports for one run: the final state and the events of
    docs/model.md section 9, without a trajectory.

    Also a read-only mapping (``summary["T1"]``, ``dict(summary)``, :meth:`as_dict`) for
    code written against the earlier plain dicts; ``W`` is a key only when it was asked for.

    Attributes
    ----------
    status : ``converged``, ``max_steps``, ``diverged`` or ``interrupted``.
    steps, flow_time : where the run stopped (``flow_time = eta * steps``).
    T1, T2, T3, T4, leader, follower : the :class:`PhaseTimes` fields (steps, ``None``
        when not reached; 0-based neuron indices), at step resolution.
    alignment : (m, L) final ``|c_jl|``; ``features``: the feature each neuron learned, or ``None``.
    peak_offdiag : (m, m) ``max_t |E_jr|`` (0 on the diagonal); ``E``: (m, m) final head;
    head_distance : final ``|E - I|_F``; ``loss``: final population loss.
    outcome : ``diverse``, ``collapsed`` or ``incomplete`` (``status.outcome_from``).
    W : (m, d) final weights, or ``None`` when not asked for.
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

    __eq__ = object.__eq__  # arrays inside: identity, not PhaseTimes' field comparison
    __hash__ = object.__hash__

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)} (got {self.status!r})")

    def _keys(self):
        return [f.name for f in fields(self) if f.name != "W" or self.W is not None]

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
