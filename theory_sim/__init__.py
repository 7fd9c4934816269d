"""theory-sim: exact, fast simulation of the two-layer model of Wen & Li (NeurIPS 2022),
"The Mechanism of Prediction Head in Non-contrastive Self-supervised Learning".

Public API (see ``MODEL.md`` in the docs for the model)::

    ModelParams, TrainParams        frozen, validated parameters
    simulate(model, train) -> Run   population GD or online SGD (numba)
    population_loss / population_grad / sgd_gradient
    load_run / save_run             reload / store a Run
"""

from ._version import __version__
from .io import load_run, save_run
from .params import ModelParams, ParamError, TrainParams
from .results import Run
from .simulate import (
    feature_vectors,
    initial_weights,
    population_grad,
    population_loss,
    population_terms,
    sgd_gradient,
    simulate,
    split_moments,
)

__all__ = [
    "ModelParams",
    "ParamError",
    "Run",
    "TrainParams",
    "__version__",
    "feature_vectors",
    "initial_weights",
    "load_run",
    "population_grad",
    "population_loss",
    "population_terms",
    "save_run",
    "sgd_gradient",
    "simulate",
    "split_moments",
]
