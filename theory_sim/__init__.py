"""theory-sim: exact, fast simulation of the two-layer model of Wen & Li (NeurIPS 2022),
"The Mechanism of Prediction Head in Non-contrastive Self-supervised Learning".

Public API (docs/model.md describes the model)::

    ModelParams, TrainParams        frozen, validated parameters          (params)
    simulate(model, train) -> Run   any engine of engines.ENGINES          (driver)
    Simulation, resume              a run in progress: checkpoint and resume exactly
    simulate_many(models, trains)   many population runs in one numba call (ensemble)
    population_loss / population_grad / sgd_gradient                       (objective)
    feature_vectors, initial_weights, split_moments                        (model)
    load_run / save_run             reload / store a Run                   (io)
    analysis                        phase times, substitution ratio, acceleration factor
"""

from . import analysis, outcome, stats
from ._version import __version__
from .driver import Simulation, resume, simulate
from .ensemble import simulate_many
from .io import load_run, save_run
from .model import feature_vectors, initial_weights, split_moments
from .objective import population_grad, population_loss, population_terms, sgd_gradient
from .params import ModelParams, ParamError, TrainParams
from .results import Run, RunSummary

__all__ = [
    "ModelParams",
    "ParamError",
    "Run",
    "RunSummary",
    "Simulation",
    "TrainParams",
    "__version__",
    "analysis",
    "feature_vectors",
    "initial_weights",
    "load_run",
    "outcome",
    "population_grad",
    "population_loss",
    "population_terms",
    "resume",
    "save_run",
    "sgd_gradient",
    "simulate",
    "simulate_many",
    "split_moments",
    "stats",
]
