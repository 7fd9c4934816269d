"""The ``population`` engine: exact gradient descent on the closed-form population loss,
in reduced coordinates ``W = B Q^T`` (docs/model.md sections 6-7; kernel ``core.population``;
the ablations of section 12: ``core.variants``)."""

from __future__ import annotations

import numpy as np

from ..core._jit import VANISH_TOL
from ..core.population import population_advance, population_observe
from ..core.variants import population_advance_variant
from ..model import reduced_coordinates
from ..params import ParamError
from .base import Engine, StepInputs, is_default_variant

BYTES_PER_ELEMENT = 96
"""Peak bytes per element of ``W(0)`` (m, d) and the features (d, L) while a run is set up:
float64 copies for the seeded draw, the QR of ``[V, W(0)^T]``, the basis ``Q`` and the final
point (measured: 0.37 GB at d = 1e6, m = L = 2)."""
SECONDS_PER_ELEMENT = 1.0e-6
"""Set-up time per element of ``W(0)`` and the features (measured: ~4 s at d = 1e6, m = L = 2,
on a shared 2-core machine; the steps themselves cost O(m^2 L) whatever d)."""


def available_memory() -> int | None:
    """Bytes of memory the machine can still give (``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def materialised_cost(model, train, extra_bytes: float = 0.0) -> tuple[float, float]:
    """``(bytes, seconds)`` to set up a run that materialises ``W(0)`` and the features."""
    elements = float(model.d) * (model.m + model.L)
    return elements * BYTES_PER_ELEMENT + extra_bytes, elements * SECONDS_PER_ELEMENT


def check_machine_memory(engine: str, model, train, need: float) -> None:
    """ParamError (pointing to the flow engine in reduced coordinates) if ``need`` bytes exceed
    what the machine has available."""
    avail = available_memory()
    if avail is not None and need > avail:
        raise ParamError(f"the {engine} engine at d={model.d} needs about {need / 1e9:.3g} GB, more than "
                         f"the {avail / 1e9:.3g} GB this machine has available; use --engine flow "
                         f"--init reduced (no array of size d) or a smaller --d")


class PopulationEngine(Engine):
    name = "population"
    help = "exact GD on the closed-form population loss"
    first_chunk = 4096
    # B (m, r), Q (d, r), the EMA target Bbar (m, r) in the same basis, |w_j(0)| (m,)
    state_arrays = ("coords", "basis", "target", "norms0")
    variants = True
    derived_state = ("target", "norms0")

    @classmethod
    def setup_cost(cls, model, train) -> tuple[float, float]:
        """``(bytes, seconds)`` before the first step (``W(0)``, features, reduced coordinates)."""
        return materialised_cost(model, train)

    @classmethod
    def check_memory(cls, model, train):
        check_machine_memory(cls.name, model, train, cls.setup_cost(model, train)[0])

    @classmethod
    def init_state(cls, W0, inputs: StepInputs):
        Q, B, _ = reduced_coordinates(inputs.V, W0)
        # |w_j(0)| = |B_j(0)| (Q is orthonormal): no need for W0 itself
        return {"coords": B, "basis": Q, "target": B.copy(), "norms0": np.sqrt(np.sum(B * B, axis=1))}

    def __init__(self, model, train, inputs, state):
        super().__init__(model, train, inputs, state)
        self._Vr = np.ascontiguousarray(state["basis"].T @ inputs.V)
        self._default = is_default_variant(train)
        self._vanish2 = (VANISH_TOL * state["norms0"]) ** 2

    def advance(self, E, rec, rec_state, events, n):
        i = self.inputs
        if self._default:  # the paper's model: today's kernel, bit for bit
            return population_advance(self.state["coords"], E, self._Vr, i.E_mask, i.model, i.rates, i.stop,
                                      rec, rec_state, n, events, i.event_params)
        return population_advance_variant(self.state["coords"], self.state["target"], E, self._Vr, i.E_mask,
                                          i.model, i.rates, i.stop, rec, rec_state, n, events, i.event_params,
                                          i.variant, self._vanish2)

    def observe_final(self, E, step, events):
        i = self.inputs
        population_observe(self.state["coords"], E, self._Vr, i.E_mask, i.model, i.rates, step, events,
                           i.event_params)

    def weights(self):
        return self.state["coords"] @ self.state["basis"].T

    def target_weights(self):
        return self.state["target"] @ self.state["basis"].T if self.train.target == "ema" else None
