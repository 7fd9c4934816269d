"""Observables of a recorded run (MODEL.md section 9): pure numpy on a :class:`Run`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import DEFAULT_ALIGN_THRESHOLD
from .results import Run

DEFAULT_HEAD_TOL = 0.01
"""T4: ``|E - I|_F`` below this counts as the head having returned to I."""


def alignment(run: Run) -> np.ndarray:
    """(T, m, L) ``|c_jl(t)|`` (signs are irrelevant: the activation is odd)."""
    return np.abs(run.alignment)


def learned(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T, m, L) boolean: neuron j has learned feature l (``|c_jl| >= threshold``)."""
    return alignment(run) >= threshold


def head_distance(run: Run) -> np.ndarray:
    """(T,) ``|E(t) - I|_F``."""
    eye = np.eye(run.E.shape[1])
    return np.sqrt(((run.E - eye) ** 2).sum(axis=(1, 2)))


def _first(mask: np.ndarray, start: int = 0) -> int | None:
    idx = np.flatnonzero(mask[start:])
    return None if idx.size == 0 else int(idx[0]) + start


@dataclass(frozen=True)
class PhaseTimes:
    """Phase times in steps (``None`` where the event did not happen) and the roles.

    T1: some neuron (the leader) learns ``v_1``; T2: peak of ``|E_{follower,leader}|``;
    T3: the follower learns ``v_2``; T4: first time after T3 that ``|E - I|_F < head_tol``.
    """

    T1: int | None
    T2: int | None
    T3: int | None
    T4: int | None
    leader: int | None
    follower: int | None

    def as_dict(self) -> dict:
        return {"T1": self.T1, "T2": self.T2, "T3": self.T3, "T4": self.T4,
                "leader": self.leader, "follower": self.follower}


def phase_times(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD,
                head_tol: float = DEFAULT_HEAD_TOL) -> PhaseTimes:
    """The phase times of MODEL.md section 9, read off the recorded trajectory.

    Resolution is the recording stride. The follower is the first non-leader neuron
    to learn ``v_2``; if none does, the non-leader with the largest final ``|c_j2|``.
    T2 is ``None`` when ``|E_{follower,leader}|`` never leaves 0 or is still rising at
    the last recorded point.
    """
    c = alignment(run)
    steps = run.steps
    T, m, L = c.shape
    first_v1 = [_first(c[:, j, 0] >= threshold) for j in range(m)]
    hits = [(t, -c[t, j, 0], j) for j, t in enumerate(first_v1) if t is not None]
    if not hits:
        return PhaseTimes(None, None, None, None, None, None)
    i1, _, leader = min(hits)
    others = [j for j in range(m) if j != leader]
    if not others:
        return PhaseTimes(int(steps[i1]), None, None, None, leader, None)
    follower, i3 = None, None
    if L >= 2:
        v2 = [(_first(c[:, j, 1] >= threshold), j) for j in others]
        v2 = [(t, j) for t, j in v2 if t is not None]
        if v2:
            i3, follower = min(v2)
    if follower is None:
        follower = others[int(np.argmax(c[-1, others, 1 if L >= 2 else 0]))]
    e = np.abs(run.E[:, follower, leader])
    i2 = int(np.argmax(e))
    if e[i2] == 0.0 or (i2 == T - 1 and run.status != "converged"):
        i2 = None
    i4 = None
    if i3 is not None:
        i4 = _first(head_distance(run) < head_tol, i3)

    def at(i):
        return None if i is None else int(steps[i])

    return PhaseTimes(at(i1), at(i2), at(i3), at(i4), leader, follower)


def peak_offdiag(run: Run) -> np.ndarray:
    """(m, m) ``max_t |E_jr(t)|`` off the diagonal (0 on it)."""
    peak = np.abs(run.E).max(axis=0)
    np.fill_diagonal(peak, 0.0)
    return peak


def features_learned(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD, t: int = -1) -> list:
    """Feature index learned by each neuron at point ``t`` (``None`` if none)."""
    c = alignment(run)[t]
    out = []
    for j in range(c.shape[0]):
        l = int(np.argmax(c[j]))
        out.append(l if c[j, l] >= threshold else None)
    return out


def outcome(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> str:
    """``diverse`` (every neuron learned a feature and not all the same one),
    ``collapsed`` (every neuron learned a feature, all the same one) or
    ``incomplete`` (some neuron learned nothing, or the run diverged)."""
    if run.status == "diverged":
        return "incomplete"
    feats = features_learned(run, threshold)
    if any(f is None for f in feats):
        return "incomplete"
    if len(set(feats)) == 1 and len(feats) > 1:
        return "collapsed"
    return "diverse"
