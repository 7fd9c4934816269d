"""The ``population`` engine: exact gradient descent on the closed-form population loss,
in reduced coordinates ``W = B Q^T`` (docs/model.md sections 6-7; kernel ``core.population``)."""

from __future__ import annotations

import numpy as np

from ..core.population import population_advance, population_observe
from ..model import reduced_coordinates
from .base import Engine, StepInputs


class PopulationEngine(Engine):
    name = "population"
    help = "exact GD on the closed-form population loss"
    first_chunk = 4096
    state_arrays = ("coords", "basis")  # B (m, r) and Q (d, r)

    @classmethod
    def init_state(cls, W0, inputs: StepInputs):
        Q, B, _ = reduced_coordinates(inputs.V, W0)
        return {"coords": B, "basis": Q}

    def __init__(self, model, train, inputs, state):
        super().__init__(model, train, inputs, state)
        self._Vr = np.ascontiguousarray(state["basis"].T @ inputs.V)

    def advance(self, E, rec, rec_state, events, n):
        i = self.inputs
        return population_advance(self.state["coords"], E, self._Vr, i.E_mask, i.model, i.rates, i.stop,
                                  rec, rec_state, n, events, i.event_params)

    def observe_final(self, E, step, events):
        i = self.inputs
        population_observe(self.state["coords"], E, self._Vr, i.E_mask, i.model, i.rates, step, events,
                           i.event_params)

    def weights(self):
        return self.state["coords"] @ self.state["basis"].T
