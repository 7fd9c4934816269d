"""The ``sgd-fast`` engine: the ``sgd`` process, exact in distribution, sampling only the
projections the forward pass needs (docs/model.md section 8; ``core.sgd.sgd_fast_gradient``)."""

from __future__ import annotations

from ..params import MAX_ELEMENTS, ParamError
from .sgd import SGDEngine


class SGDFastEngine(SGDEngine):
    name = "sgd-fast"
    help = "online mini-batch SGD, same law as sgd, only the needed projections sampled"
    fast = True

    @classmethod
    def check_memory(cls, model, train):
        size = train.batch * model.P * model.m
        if size > MAX_ELEMENTS:
            raise ParamError(f"batch*P*m = {size:.3g} is too large; lower --batch or --P")
