"""The ``population`` engine: exact gradient descent on the closed-form population loss,
in reduced coordinates ``W = B Q^T`` (docs/model.md sections 6-7; kernel ``core.population``;
the ablations of section 12: ``core.variants``)."""

from __future__ import annotations

import numpy as np

from ..core._jit import VANISH_TOL
from ..core.population import population_advance, population_observe
from ..core.variants import population_advance_variant
from ..model import reduced_coordinates
from .base import Engine, StepInputs, is_default_variant


class PopulationEngine(Engine):
    name = "population"
    help = "exact GD on the closed-form population loss"
    first_chunk = 4096
    # B (m, r), Q (d, r), the EMA target Bbar (m, r) in the same basis, |w_j(0)| (m,)
    state_arrays = ("coords", "basis", "target", "norms0")
    variants = True
    derived_state = ("target", "norms0")

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
