"""The result of a simulation: a recorded trajectory plus everything needed to reproduce it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATUSES = ("converged", "max_steps", "diverged", "interrupted")


@dataclass(frozen=True, eq=False)
class Run:
    """A recorded training trajectory (``T`` points, ``m`` neurons, ``L`` features).

    Attributes
    ----------
    steps : (T,) step index of each point.
    alignment : (T, m, L) ``c_jl = <w_j, v_l> / |w_j|`` (MODEL.md section 9).
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
