"""The ``sgd`` engine: online mini-batch SGD with materialised patches
(docs/model.md sections 3 and 8; kernel ``core.sgd``)."""

from __future__ import annotations

import numpy as np

from ..core.sgd import sgd_advance, sgd_observe
from ..objective import sgd_data, sgd_work
from ..params import MAX_ELEMENTS, ParamError
from .base import Engine


class SGDEngine(Engine):
    name = "sgd"
    help = "online mini-batch SGD, patches materialised"
    options = ("batch",)
    fast = False  # sgd_advance's switch to the projection-only sampler (engines.sgd_fast)

    @classmethod
    def check_memory(cls, model, train):
        size = train.batch * model.P * model.d
        if size > MAX_ELEMENTS:
            raise ParamError(f"the sgd engine materialises batch*P*d = {size:.3g} floats (more than "
                             f"{MAX_ELEMENTS:.0e}); use --engine sgd-fast (same law) or a smaller "
                             "--batch, --P or --d")

    @classmethod
    def init_state(cls, W0, inputs):
        return {"coords": W0.copy()}  # the weights themselves

    def __init__(self, model, train, inputs, state):
        super().__init__(model, train, inputs, state)
        self._data = sgd_data(model)
        self._work = sgd_work(model, train.batch, self.fast)
        self._gW, self._gE = np.empty_like(state["coords"]), np.empty((model.m, model.m))

    def advance(self, E, rec, rec_state, events, n):
        i = self.inputs
        return sgd_advance(self.state["coords"], E, i.V, i.E_mask, self._data, i.model, i.rates, i.stop,
                           rec, rec_state, n, self.train.seed, self._gW, self._gE, self._work, self.fast,
                           events, i.event_params)

    def observe_final(self, E, step, events):
        sgd_observe(self.state["coords"], E, self.inputs.V, step, events, self.inputs.event_params)

    def weights(self):
        return self.state["coords"].copy()
