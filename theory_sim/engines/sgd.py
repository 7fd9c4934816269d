"""The ``sgd`` engine: online mini-batch SGD with materialised patches
(docs/model.md sections 3 and 8; kernel ``core.sgd``; the ablations of section 12:
``core.sgd.sgd_advance_variant``)."""

from __future__ import annotations

import numpy as np

from ..core._jit import VANISH_TOL
from ..core.sgd import sgd_advance, sgd_advance_variant, sgd_observe
from ..objective import sgd_data, sgd_work
from ..params import MAX_ELEMENTS, ParamError
from .base import Engine, is_default_variant
from .population import check_machine_memory, materialised_cost


class SGDEngine(Engine):
    name = "sgd"
    help = "online mini-batch SGD, patches materialised"
    options = ("batch",)
    fast = False  # sgd_advance's switch to the projection-only sampler (engines.sgd_fast)
    # W (m, d), the EMA target Wbar (m, d), |w_j(0)| (m,)
    state_arrays = ("coords", "target", "norms0")
    variants = True
    derived_state = ("target", "norms0")

    @classmethod
    def setup_cost(cls, model, train) -> tuple[float, float]:
        """``(bytes, seconds)`` before the first step: ``W(0)``, the features and, for ``sgd``,
        the materialised batch of patches (batch, P, d)."""
        patches = 0.0 if cls.fast else 8.0 * train.batch * model.P * model.d
        return materialised_cost(model, train, patches)

    @classmethod
    def check_memory(cls, model, train):
        size = train.batch * model.P * model.d
        if not cls.fast and size > MAX_ELEMENTS:
            raise ParamError(f"the sgd engine materialises batch*P*d = {size:.3g} floats (more than "
                             f"{MAX_ELEMENTS:.0e}); use --engine sgd-fast (same law) or a smaller "
                             "--batch, --P or --d")
        check_machine_memory(cls.name, model, train, cls.setup_cost(model, train)[0])

    @classmethod
    def init_state(cls, W0, inputs):
        return {"coords": W0.copy(), "target": W0.copy(), "norms0": np.sqrt(np.sum(W0 * W0, axis=1))}

    def __init__(self, model, train, inputs, state):
        super().__init__(model, train, inputs, state)
        self._data = sgd_data(model)
        self._work = sgd_work(model, train.batch, self.fast)
        self._gW, self._gE = np.empty_like(state["coords"]), np.empty((model.m, model.m))
        self._default = is_default_variant(train)
        if not self._default:
            N, P, m = train.batch, model.P, model.m
            self._extra = (np.empty((N, P, m)), np.empty((N, m)), np.empty((N, m)))
            if self.fast:  # y: coordinates in the basis of [W; Wbar]
                self._work = (np.empty((N, P, 2 * m)),) + self._work[1:]
            self._vanish2 = (VANISH_TOL * state["norms0"]) ** 2

    def advance(self, E, rec, rec_state, events, n):
        i = self.inputs
        if self._default:
            return sgd_advance(self.state["coords"], E, i.V, i.E_mask, self._data, i.model, i.rates, i.stop,
                               rec, rec_state, n, self.train.seed, self._gW, self._gE, self._work, self.fast,
                               events, i.event_params)
        return sgd_advance_variant(self.state["coords"], self.state["target"], E, i.V, i.E_mask, self._data,
                                   i.model, i.rates, i.stop, rec, rec_state, n, self.train.seed, self._gW,
                                   self._gE, self._work, self._extra, self.fast, events, i.event_params,
                                   i.variant, self._vanish2)

    def observe_final(self, E, step, events):
        sgd_observe(self.state["coords"], E, self.inputs.V, step, events, self.inputs.event_params)

    def weights(self):
        return self.state["coords"].copy()

    def target_weights(self):
        return self.state["target"].copy() if self.train.target == "ema" else None
