"""The outcome rule in its one home (``theory_sim.outcome``) and the statistics helpers
(``theory_sim.stats``): edge cases of the threshold, more than two neurons, unsettled runs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from theory_sim import analysis, outcome
from theory_sim.stats import wilson_interval


def test_alignment_at_exactly_the_threshold_counts_as_learned():
    c = np.array([[0.9, 0.1], [0.1, np.nextafter(0.9, 0.0)]])
    assert outcome.features(c, 0.9) == [0, None]


def test_alignment_of_zero_and_nonfinite_rows():
    c = outcome.alignment(np.array([[0.0, 0.0], [0.3, -0.4]]), np.array([0.0, 0.5]))
    np.testing.assert_array_equal(c, [[0.0, 0.0], [0.6, 0.8]])
    assert outcome.features(np.array([[np.nan, 1.0], [0.0, 1.0]]), 0.9) == [None, 1]


@pytest.mark.parametrize("feats, want", [
    ([0, 1, 2], "diverse"), ([0, 0, 0], "collapsed"), ([0, 0, 1], "diverse"),
    ([0, None, 1], "incomplete"), ([2, 2, 2, 2, 2], "collapsed"), ([0], "diverse"),
])
def test_outcome_rule_with_more_than_two_neurons(feats, want):
    assert outcome.outcome_from(feats, settled=True) == want


@pytest.mark.parametrize("status, fixed, want", [
    ("converged", False, True), ("converged", True, True),
    ("max_steps", False, False),   # the flow-time cap: cut off, not a fate
    ("max_steps", True, True),     # a fixed horizon the user asked for
    ("diverged", True, False), ("interrupted", False, False), ("vanishing", False, False),
])
def test_settled_is_decided_once(status, fixed, want):
    assert outcome.is_settled(status, fixed_budget=fixed) is want


def test_classify_reads_the_rule_off_a_final_state():
    A = np.array([[0.99, 0.0], [0.0, -0.5]])
    c, feats, oc = outcome.classify(A, np.array([1.0, 0.5]), "converged", 0.9)
    assert feats == [0, 1] and oc == "diverse"
    assert outcome.classify(A, np.array([1.0, 0.5]), "max_steps", 0.9)[2] == "incomplete"
    assert outcome.classify(A, np.array([1.0, 0.5]), "max_steps", 0.9, fixed_budget=True)[2] == "diverse"


def test_analysis_keeps_one_public_namespace():
    assert analysis.wilson_interval is wilson_interval
    assert analysis.outcome_from is outcome.outcome_from


@pytest.mark.parametrize("k, n", [(0, 7), (3, 7), (7, 7), (50, 256)])
def test_wilson_interval_at_other_levels_matches_scipy(k, n):
    z = sps.norm.ppf(0.995)
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.99, method="wilson")
    lo, hi = wilson_interval(k, n, z=z)
    assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)


def test_wilson_interval_of_no_runs_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)
