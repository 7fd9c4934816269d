"""The flow runs behind figs 4, 5 and 8 (``experiments.flow_runs``) and fig 8's regime:
Wilson intervals against scipy, the flow's outcome and T1 against the discrete population
engine, the stop at T1, a run the old vanishing rule stopped too early going to its fate, and
the choices of fig 8 against docs/model.md sections 1 and 4."""

from __future__ import annotations

import math
from dataclasses import replace

import flow_support as fs
import numpy as np
import pytest
from scipy import stats

import theory_sim as ts
from theory_sim import experiments as ex
from theory_sim.experiments import fig8_paper_regime as f8
from theory_sim.experiments.flow_runs import FLOW_OUTCOMES, count_outcomes, run_flow_many
from theory_sim.initial_law import reduced_coordinates
from theory_sim.stats import wilson_interval
from theory_sim.status import BN_OUTCOMES, OUTCOMES


@pytest.mark.parametrize("k, n", [(0, 16), (3, 16), (16, 16), (128, 256), (255, 256), (1, 1)])
def test_wilson_interval_matches_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)


def test_wilson_interval_arrays_and_empty():
    lo, hi = wilson_interval(np.array([0, 5]), np.array([0, 10]))
    assert (lo[0], hi[0]) == (0.0, 1.0)
    assert lo[1] < 0.5 < hi[1]


def test_flow_outcomes_are_fates():
    # no complete_collapse (a run with batch normalisation cannot reach it) and no vanishing
    # (a guessed fate: the flow runs use no heuristic stop)
    assert FLOW_OUTCOMES == tuple(oc for oc in OUTCOMES if oc not in ("complete_collapse", "vanishing"))
    assert FLOW_OUTCOMES == ("diverse", "collapsed", "incomplete")


def test_flow_run_agrees_with_the_discrete_engine_at_the_defaults():
    """Seed 1 at the defaults (d = 512, same W(0)): the discrete population engine at a small
    eta tells the story (diverse with the head, collapsed without); the flow ends the same way
    and its T1 (flow time) matches eta * T1 (steps) to O(eta)."""
    model = ts.ModelParams()
    trains = [ts.TrainParams(eta=1.0, seed=1), ts.TrainParams(eta=1.0, seed=1, head="frozen")]
    flow = run_flow_many(model, trains, init="materialised")
    eta = 0.01
    disc = ts.simulate_many(model, [replace(t, eta=eta, eta_E=0.1 * eta) for t in trains])
    for f, d in zip(flow, disc, strict=True):
        assert f["status"] == "converged" and f["outcome"] == d["outcome"]
    assert [f["outcome"] for f in flow] == ["diverse", "collapsed"]
    assert flow[0]["T1"] == pytest.approx(disc[0]["T1"] * eta, rel=0.02)


def test_until_T1_stops_at_the_same_T1():
    model = ts.ModelParams()
    trains = [ts.TrainParams(eta=1.0, seed=s) for s in (1, 2, 3)]
    full = run_flow_many(model, trains, dims=[10**6] * 3, t_max=1e12)  # T1 ~ 3e8
    cut = run_flow_many(model, trains, dims=[10**6] * 3, until="T1")
    for a, b in zip(full, cut, strict=True):
        assert a["T1"] is not None and b["T1"] == a["T1"]  # chunking does not change the steps
        assert b["T1"] <= b["t"] < a["t"]


def test_a_run_the_old_vanishing_rule_stopped_goes_to_its_fate():
    """Fig 8's regime at d = 1e3, seed 2: the old default rule stopped the follower as
    vanishing, but it learns v_2. With no heuristic stop the run ends converged and diverse,
    as the kernel driven directly (tests/flow_support.py) does, to the last bit."""
    d = 1000
    model = ts.ModelParams(alpha=(math.log2(d), math.log2(d) / math.log(d)))
    train = ts.TrainParams(eta=1.0, eta_E=0.1, seed=2, engine="flow")
    plain = run_flow_many(model, [train], dims=[d])[0]
    B0, Vr = reduced_coordinates(2, 2, d, 2)
    ref = fs.integrate_flow(model, train, B0=B0, Vr=Vr, t_record=np.zeros(0))
    assert ref["status"] == "converged"
    c = np.abs(ref["B"] @ Vr) / np.linalg.norm(ref["B"], axis=1)[:, None]
    assert plain["status"] == "converged" and plain["outcome"] == "diverse"
    assert sorted(np.argmax(c, axis=1)) == [0, 1] and c.max(axis=1).min() >= 0.9
    np.testing.assert_array_equal(plain["alignment"], c)


def test_the_flow_time_cap_gives_incomplete():
    res = run_flow_many(ts.ModelParams(), [ts.TrainParams(eta=1.0, seed=1)], dims=[10**9], t_max=1e6)[0]
    assert res["status"] == "max_steps" and res["outcome"] == "incomplete" and res["t"] == 1e6


@pytest.mark.parametrize("kw, message", [
    ({"init": "exact"}, "init must be"),
    ({"until": "T2"}, "until must be"),
    ({"init": "materialised", "dims": [10**6]}, "need init='reduced'"),
    ({"seeds": [1, 2]}, "one entry per run"),
])
def test_run_flow_many_rejects_bad_input(kw, message):
    with pytest.raises(ValueError, match=message):
        run_flow_many(ts.ModelParams(d=64), [ts.TrainParams(eta=1.0)], **kw)


def test_regime_choices_follow_the_model():
    """alpha_1 = 2^{log2 log2 d}, alpha_2 = alpha_1 / ln d (section 1); eta_E/eta between
    1/alpha_1^2 and 1/polylog d (section 4)."""
    for d in (1e3, 1e6, 1e10):
        a1, a2 = f8.regime_alpha(d)
        assert a1 == pytest.approx(2 ** math.log2(math.log2(d)))
        assert a1 / a2 == pytest.approx(math.log(d))
        assert a2 == pytest.approx(1 / math.log(2))
        r = f8.regime_ratio(d)
        assert 1 / a1**2 <= r * (1 + 1e-12) and r <= 1 / math.log(d)


def test_first_d_above_needs_every_larger_d():
    pairs = ((1e3, 0.95), (1e4, 0.5), (1e5, 0.92), (1e6, 0.97))
    rows = [{"d": d, "trainable": {"fraction": f}} for d, f in pairs]
    assert f8.first_d_above(rows, "trainable") == 1e5
    assert f8.first_d_above(rows[:2], "trainable") is None


def test_fig8_small_plan_counts_every_run():
    plan = replace(ex.QUICK, regime_d_values=(10**3, 10**5), regime_seeds=(1, 2, 3))
    fig, js, facts = f8.make(plan)
    assert len(fig.axes) == 2
    for row in js["rows"]:
        for head in ("trainable", "frozen"):
            h = row[head]
            assert sum(h["counts"].values()) == h["n"] == 3
            lo, hi = h["wilson95"]
            assert lo <= h["fraction"] <= hi
    assert set(facts["diverse_with_head"]) == {10**3, 10**5}


def test_count_outcomes_has_every_outcome():
    c = count_outcomes([{"outcome": "incomplete"}, {"outcome": "diverse"}, {"outcome": "incomplete"}])
    assert c == {**dict.fromkeys(FLOW_OUTCOMES, 0), "incomplete": 2, "diverse": 1}


def test_frozen_collapse_fraction_follows_the_cauchy_law():
    """With E = I the neurons race independently: a neuron takes v_2 iff
    |a_2/a_1| > (alpha_1/alpha_2)^{3/2} (a Cauchy tail). The flow's collapsed fraction over 256
    seeds at d = 1e3 in fig 8's regime lies in its 99 % Wilson interval around the measured
    value, and the prediction is not trivial (well below 1)."""
    d = 1000
    a1, a2 = f8.regime_alpha(d)
    pred = f8.frozen_collapse_prediction(a1, a2)
    assert 0.85 < pred < 0.97
    trains = [ts.TrainParams(eta=1.0, head="frozen", seed=s) for s in range(1, 257)]
    res = run_flow_many(ts.ModelParams(alpha=(a1, a2)), trains, dims=[d] * 256)
    c = count_outcomes(res)
    assert c["incomplete"] == 0
    lo, hi = wilson_interval(c["collapsed"], 256, z=2.5758293035489)
    assert lo <= pred <= hi
    # the same law at a small gap (r = 1.5), where collapse is far from certain
    pred_small = f8.frozen_collapse_prediction(6.0, 4.0)
    res = run_flow_many(ts.ModelParams(alpha=(6.0, 4.0)), trains[:128], dims=[d] * 128)
    lo, hi = wilson_interval(count_outcomes(res)["collapsed"], 128, z=2.5758293035489)
    assert pred_small < 0.7 and lo <= pred_small <= hi


def _rows(counts_head, counts_frozen, n, ds=(1e3, 1e4)):
    rows = []
    for d, ch, cf in zip(ds, counts_head, counts_frozen, strict=True):
        row = {"d": d, "frozen_collapse_prediction": 0.9}
        for head, c in (("trainable", ch), ("frozen", cf)):
            c = {**dict.fromkeys(FLOW_OUTCOMES, 0), **c}
            row[head] = {"n": n, "counts": c, "intervals": {oc: wilson_interval(k, n) for oc, k in c.items()}}
        rows.append(row)
    return rows


def test_regime_figure_draws_the_fractions_and_the_prediction():
    from theory_sim import plotting

    rows = _rows([{"diverse": 6, "incomplete": 2}, {"diverse": 1, "incomplete": 7}],
                 [{"collapsed": 7, "diverse": 1}, {"collapsed": 8}], 8)
    fig = plotting.regime_figure(rows, FLOW_OUTCOMES)
    left, right = fig.axes[:2]
    by_label = {c.get_label().split()[0]: c.lines[0] for c in left.containers}
    np.testing.assert_allclose(by_label["diverse"].get_ydata(), [6 / 8, 1 / 8])
    np.testing.assert_allclose(by_label["incomplete"].get_ydata(), [2 / 8, 7 / 8])
    assert "collapsed" not in by_label  # an outcome that never happens is not drawn (except the theorem's)
    labels = [ln.get_label() for ln in right.get_lines()]
    assert any("prediction" in lab for lab in labels)


def test_phase_diagram_draws_vanishing_as_its_own_heatmap():
    from theory_sim import plotting

    n = 4
    counts = {oc: np.zeros((2, 3), int) for oc in BN_OUTCOMES}
    counts["diverse"][:] = 2
    counts["vanishing"][:] = 1
    counts["incomplete"][:] = 1
    counts["vanishing"][1, 2], counts["collapsed"][1, 2] = 0, 1
    frozen = {oc: np.zeros(3, int) for oc in BN_OUTCOMES}
    frozen["collapsed"][:] = 4
    fig = plotting.phase_diagram_figure([1.5, 2, 3], [0.01, 0.1], counts, frozen, n, outcomes=BN_OUTCOMES)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == len(BN_OUTCOMES)
    k = BN_OUTCOMES.index("vanishing")
    arr = np.asarray(images[k].get_array())
    np.testing.assert_allclose(arr[:2], counts["vanishing"] / n)
    np.testing.assert_allclose(arr[3], frozen["vanishing"] / n)
