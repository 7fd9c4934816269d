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

from . import _numba_env

_numba_env.sanitize()  # before numba is imported: a bad NUMBA_* value must not crash it

from . import analysis, outcome, stats  # noqa: E402
from ._version import __version__  # noqa: E402
from .driver import Simulation, resume, simulate  # noqa: E402
from .ensemble import simulate_many  # noqa: E402
from .io import load_run, save_run  # noqa: E402
from .model import feature_vectors, initial_weights, split_moments  # noqa: E402
from .objective import population_grad, population_loss, population_terms, sgd_gradient  # noqa: E402
from .params import ModelParams, ParamError, TrainParams  # noqa: E402
from .results import Run, RunSummary  # noqa: E402

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
