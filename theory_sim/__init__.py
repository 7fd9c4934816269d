"""theory-sim: exact, fast simulation of the two-layer model of Wen & Li (NeurIPS 2022),
"The Mechanism of Prediction Head in Non-contrastive Self-supervised Learning".

Public API (see ``MODEL.md`` in the docs for the model)::

    ModelParams, TrainParams        frozen, validated parameters
    simulate(model, train) -> Run   population GD or online SGD (numba)
    Simulation, resume              a run in progress: checkpoint and resume exactly
    simulate_many(models, trains)   many population runs in one numba call
    population_loss / population_grad / sgd_gradient
    load_run / save_run             reload / store a Run
    analysis                        phase times, substitution ratio, acceleration factor
"""

from . import analysis
from ._version import __version__
from .batched import simulate_many
from .io import load_run, save_run
from .params import ModelParams, ParamError, TrainParams
from .results import Run
from .simulate import (
    Simulation,
    feature_vectors,
    initial_weights,
    population_grad,
    population_loss,
    population_terms,
    resume,
    sgd_gradient,
    simulate,
    split_moments,
)

__all__ = [
    "ModelParams",
    "ParamError",
    "Run",
    "Simulation",
    "TrainParams",
    "__version__",
    "analysis",
    "feature_vectors",
    "initial_weights",
    "load_run",
    "population_grad",
    "population_loss",
    "population_terms",
    "resume",
    "save_run",
    "sgd_gradient",
    "simulate",
    "simulate_many",
    "split_moments",
]
