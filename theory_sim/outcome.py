"""What a run learned, in one place (docs/model.md section 9): alignments, the feature each
neuron holds, whether the run settled, and the outcome rule. Pure numpy, on final states;
``analysis`` applies it to recorded runs, the engines' summaries to their final states."""

from __future__ import annotations

import numpy as np

UNSETTLED_STATUSES = ("diverged", "interrupted", "vanishing")
"""Statuses of a run that did not settle, whatever its budget (``vanishing``: the opt-in stop)."""


def alignment(A, norms) -> np.ndarray:
    """(m, L) ``|c_jl| = |A_jl| / |w_j|`` (0 for a zero row; NaN rows stay NaN)."""
    A = np.asarray(A, dtype=np.float64)
    nrm = np.asarray(norms, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(np.where(nrm[:, None] > 0.0, A / np.where(nrm[:, None] > 0.0, nrm[:, None], 1.0), 0.0))


def features(c, threshold: float) -> list:
    """The feature each neuron holds, ``|c_jl| >= threshold`` (the most aligned one; ``None``
    for none or for a row that is not finite)."""
    c = np.asarray(c, dtype=np.float64)
    out = []
    for row in c:
        if not np.all(np.isfinite(row)) or row.size == 0:
            out.append(None)
            continue
        l = int(np.argmax(row))
        out.append(l if row[l] >= threshold else None)
    return out


def is_settled(status: str, *, fixed_budget: bool) -> bool:
    """Whether a run's end state is its fate: not diverged, interrupted or stopped as
    ``vanishing``, and not stopped by the flow-time cap (``max_steps`` without a fixed
    ``steps`` budget). A fixed budget's end is read as it is: the user asked for that horizon."""
    if status in UNSETTLED_STATUSES:
        return False
    return not (status == "max_steps" and not fixed_budget)


def outcome_from(features, *, settled: bool, vanishing: bool = False, complete_collapse: bool = False) -> str:
    """The outcome rule (docs/model.md section 9).

    ``features``: the feature each neuron has learned (``None`` for none); ``settled``:
    :func:`is_settled`. Unsettled or some neuron without a feature: ``incomplete``; all
    neurons on one feature (``m > 1``): ``collapsed``; else ``diverse``. ``vanishing``: the
    caller found some featureless neuron shrinking away beside one that holds a feature
    (the opt-in rule: ``analysis.is_vanishing``); it names such a run, settled or not.
    ``complete_collapse``: every ``|w_j|`` fallen to ~0 (``analysis.is_complete_collapse``);
    it comes first.
    """
    if complete_collapse:
        return "complete_collapse"
    features = list(features)
    if vanishing and any(f is None for f in features) and any(f is not None for f in features):
        return "vanishing"
    if not settled or any(f is None for f in features):
        return "incomplete"
    if len(set(features)) == 1 and len(features) > 1:
        return "collapsed"
    return "diverse"


def classify(A, norms, status: str, threshold: float, *, fixed_budget: bool = False,
             vanishing: bool = False) -> tuple:
    """``(c, features, outcome)`` of a final state ``A = W V`` (m, L), ``norms = |w_j|``."""
    c = alignment(A, norms)
    feats = features(c, threshold)
    return c, feats, outcome_from(feats, settled=is_settled(status, fixed_budget=fixed_budget),
                                  vanishing=vanishing and status == "vanishing")


__all__ = ["UNSETTLED_STATUSES", "alignment", "classify", "features", "is_settled", "outcome_from"]
