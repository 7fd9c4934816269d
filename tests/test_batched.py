"""The batched kernel against simulate() one run at a time (the independent reference).

simulate() is run with a recording capacity above its step budget, so that it records
every step and analysis.phase_times / peak_offdiag / outcome read the trajectory at
step resolution, the resolution simulate_many tracks in its kernel.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from theory_sim import ModelParams, ParamError, RunSummary, TrainParams, analysis, initial_weights, simulate
from theory_sim.ensemble import simulate_many
from theory_sim.params import HEADS

PHASE_KEYS = ("T1", "T2", "T3", "T4", "leader", "follower")


def reference(model, train, head_tol=analysis.DEFAULT_HEAD_TOL, W0=None) -> dict:
    """What simulate_many must give for one run, from simulate() and analysis."""
    run = simulate(model, dataclasses.replace(train, record=train.max_steps + 2), W0=W0)
    thr = train.align_threshold
    pt = analysis.phase_times(run, threshold=thr, head_tol=head_tol, use_events=False).as_dict()
    outcome = analysis.outcome(run, threshold=thr)
    if run.status == "max_steps" and train.steps is None:
        outcome = "incomplete"  # stopped by the flow-time cap: documented as incomplete
    if run.status == "diverged":  # the step it failed at: only in the message
        steps = int(re.search(r"diverged at step (\d+)", run.message).group(1))
    else:
        steps = int(run.steps[-1])
    return {"run": run, "status": run.status, "steps": steps, "outcome": outcome, **pt}


def assert_same(res: dict, ref: dict, label=""):
    run = ref["run"]
    assert res["status"] == ref["status"], label
    assert res["steps"] == ref["steps"], label
    assert {k: res[k] for k in PHASE_KEYS} == {k: ref[k] for k in PHASE_KEYS}, label
    assert res["outcome"] == ref["outcome"], label
    # same arithmetic, step for step: the final weights agree to the last bit
    np.testing.assert_array_equal(res["W"], run.W, err_msg=label)
    if run.n_points == 0:
        assert np.all(np.isnan(res["alignment"])), label
        return
    np.testing.assert_array_equal(res["E"], run.E[-1], err_msg=label)
    np.testing.assert_allclose(res["alignment"], np.abs(run.alignment[-1]), rtol=1e-12, atol=1e-15,
                               err_msg=label)
    np.testing.assert_allclose(res["peak_offdiag"], analysis.peak_offdiag(run), rtol=0, atol=0,
                               err_msg=label)
    np.testing.assert_allclose(res["loss"], run.loss[-1], rtol=1e-12, err_msg=label)
    eye = np.eye(run.E.shape[1])
    assert res["head_distance"] == pytest.approx(float(np.sqrt(((run.E[-1] - eye) ** 2).sum())))


M = ModelParams(d=24, alpha=(4.0, 2.0))

# (model, train, W0 override or None): every status, head, shapes that need their own batch
CASES = [
    # converges with both features learned (diverse), T1..T4 all reached
    (M, TrainParams(eta=1.0, eta_E=0.1, seed=5, max_flow_time=3000), None),
    # the flow-time cap: outcome incomplete
    (M, TrainParams(eta=1.0, eta_E=0.1, seed=0, max_flow_time=400), None),
    # a fixed budget (no early stop), several kernel calls (> 4096 steps)
    (M, TrainParams(eta=0.5, eta_E=0.05, seed=2, steps=9000), None),
    # no head: collapse
    (M, TrainParams(eta=1.0, head="frozen", seed=4, max_flow_time=3000), None),
    (M, TrainParams(eta=1.0, eta_E=0.3, head="full", seed=4, max_flow_time=2000), None),
    # another d in the same batch as the d=24 runs (reduced coordinates do not depend on d)
    (ModelParams(d=9, alpha=(4.0, 2.0)), TrainParams(eta=1.0, eta_E=0.1, seed=7, max_flow_time=1500),
     None),
    # failures: norm runaway, NaN, a zero row at the first step
    (M, TrainParams(eta=1.0, seed=3, max_norm=1.05, max_flow_time=300), None),
    (M, TrainParams(eta=1e200, eta_E=1.0, seed=3, steps=50, max_norm=1e300), None),
    (M, TrainParams(eta=1.0, seed=3, steps=10), "zero-row"),
    # other shapes: m = 1, m = 3, L = 1, L = 3, d < m + L
    (ModelParams(d=16, m=1, alpha=(4.0, 2.0)), TrainParams(eta=1.0, seed=1, max_flow_time=500), None),
    (ModelParams(d=16, m=3, alpha=(4.0, 2.0)), TrainParams(eta=1.0, eta_E=0.1, seed=1,
                                                           max_flow_time=1500), None),
    (ModelParams(d=16, alpha=(4.0,), pi=(1.0,)), TrainParams(eta=1.0, seed=1, max_flow_time=500), None),
    (ModelParams(d=16, alpha=(5.0, 3.0, 2.0), pi=(0.4, 0.3, 0.3)),
     TrainParams(eta=1.0, eta_E=0.1, seed=2, max_flow_time=1500), None),
    (ModelParams(d=3, alpha=(4.0, 2.0)), TrainParams(eta=0.5, seed=1, max_flow_time=300), None),
    # a low threshold, random features, the exact half split
    (ModelParams(d=20, alpha=(4.0, 2.0), features="random", feature_seed=3, split="half"),
     TrainParams(eta=1.0, eta_E=0.2, seed=9, align_threshold=0.6, max_flow_time=1000), None),
]


def _w0(model, train, spec):
    if spec != "zero-row":
        return None
    W0 = initial_weights(model, train.seed)
    W0[1] = 0.0
    return W0


@pytest.fixture(scope="module")
def references():
    return [reference(m, t, W0=_w0(m, t, w)) for m, t, w in CASES]


@pytest.mark.parametrize("parallel", [True, False])
def test_batch_equals_one_at_a_time(references, parallel):
    models = [c[0] for c in CASES]
    trains = [c[1] for c in CASES]
    W0 = [_w0(*c) for c in CASES]
    W0 = [w if w is not None else initial_weights(m, t.seed)
          for w, m, t in zip(W0, models, trains, strict=True)]
    results = simulate_many(models, trains, W0=W0, parallel=parallel, weights=True)
    for i, (res, ref) in enumerate(zip(results, references, strict=True)):
        assert_same(res, ref, label=f"case {i}")
    # the cases cover what they claim to
    statuses = {r["status"] for r in results}
    assert statuses == {"converged", "max_steps", "diverged"}
    assert {r["outcome"] for r in results} == {"diverse", "collapsed", "incomplete"}
    full = references[0]
    assert None not in (full["T1"], full["T2"], full["T3"], full["T4"])


def test_seeded_default_weights_match_simulate():
    trains = [TrainParams(eta=1.0, eta_E=0.1, seed=s, max_flow_time=600) for s in range(4)]
    results = simulate_many(M, trains, weights=True)
    for res, t in zip(results, trains, strict=True):
        assert_same(res, reference(M, t), label=f"seed {t.seed}")


def test_head_tol_per_run():
    t = CASES[0][1]
    res = simulate_many(M, [t, t], head_tol=[0.01, 0.5], weights=True)
    assert_same(res[0], reference(M, t, head_tol=0.01))
    assert_same(res[1], reference(M, t, head_tol=0.5))
    assert res[1]["T4"] <= res[0]["T4"]


def test_ctrl_c_returns_finished_runs_and_marks_the_rest():
    short = TrainParams(eta=1.0, seed=1, steps=100)
    long = TrainParams(eta=1.0, seed=2, steps=10**7)

    def progress(done, total):
        raise KeyboardInterrupt

    res = simulate_many(M, [short, long], progress=progress, weights=True)
    assert_same(res[0], reference(M, short))
    assert res[1]["status"] == "interrupted"
    assert 0 < res[1]["steps"] < 10**7
    assert res[1]["outcome"] == "incomplete"


def test_bad_input():
    with pytest.raises(ParamError, match="population engine"):
        simulate_many(M, TrainParams(engine="sgd"))
    with pytest.raises(ParamError, match="same length"):
        simulate_many([M, M, M], [TrainParams(), TrainParams()])
    with pytest.raises(ParamError, match="head_tol"):
        simulate_many(M, TrainParams(steps=1), head_tol=0.0)
    with pytest.raises(TypeError):
        simulate_many(M, [TrainParams(), "x"])
    with pytest.raises(ParamError, match="W must have shape"):
        simulate_many(M, TrainParams(steps=1), W0=[np.zeros((2, 5))])
    assert simulate_many([], []) == []


# ---------------------------------------------------------------- property test

@st.composite
def run_spec(draw):
    m = draw(st.integers(1, 3))
    L = draw(st.integers(1, 3))
    d = draw(st.integers(L, 20))
    a1 = draw(st.sampled_from([3.0, 4.0, 5.0, 6.0]))
    alpha = tuple(a1 / (1.6 ** l) for l in range(L))
    P = draw(st.integers(4, 12))
    k = draw(st.integers(2, P))
    model = ModelParams(d=d, P=P, k=k, alpha=alpha, pi=tuple([1.0 / L] * L), m=m,
                        sigma=draw(st.sampled_from([0.5, 1.0])),
                        split=draw(st.sampled_from(["bernoulli", "half"])) if P % 2 == 0 else "bernoulli")
    eta = draw(st.sampled_from([0.1, 0.5, 1.0]))
    n = draw(st.integers(1, 300))
    fixed = draw(st.booleans())
    train = TrainParams(eta=eta, eta_E=eta * draw(st.sampled_from([0.0, 0.1, 1.0])),
                        head=draw(st.sampled_from(HEADS)), seed=draw(st.integers(0, 10**6)),
                        steps=n if fixed else None, max_flow_time=eta * n,
                        tol=draw(st.sampled_from([1e-5, 1e-2])),
                        align_threshold=draw(st.sampled_from([0.5, 0.9])),
                        check_every=draw(st.sampled_from([None, 1, 7])))
    return model, train, draw(st.sampled_from([0.01, 0.2]))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: conftest profile
@given(st.lists(run_spec(), min_size=1, max_size=6), st.booleans())
def test_random_small_grids_equal_one_at_a_time(specs, parallel):
    models, trains, tols = zip(*specs, strict=True)
    results = simulate_many(list(models), list(trains), head_tol=list(tols), parallel=parallel,
                            weights=True)
    for i, (res, (m, t, h)) in enumerate(zip(results, specs, strict=True)):
        assert_same(res, reference(m, t, head_tol=h), label=f"run {i}: {m} {t}")


def test_summary_is_typed_and_reads_as_the_old_dict():
    model, train = ModelParams(d=16, P=8, k=2), TrainParams(eta=0.05, steps=200)
    plain, = simulate_many(model, train)
    with_w, = simulate_many(model, train, weights=True)
    assert isinstance(plain, RunSummary)
    assert "W" not in plain and plain.W is None and "W" in with_w
    d = plain.as_dict()
    assert list(d) == list(plain) and len(plain) == len(d) == 16
    assert d == {k: plain[k] for k in plain} and dict(plain).keys() == d.keys()
    assert plain["T1"] == plain.T1 and plain.get("outcome") == plain.outcome
    with pytest.raises(KeyError):
        plain["W"]
    np.testing.assert_array_equal(with_w["W"], simulate(model, train).W)


def test_simulate_reports_the_batched_phase_times_whatever_it_records(references):
    """Issue 13: ``simulate`` tracks the phase events at every step, so a run recorded at
    only 20 points has the step-resolution phase times of ``simulate_many`` and of the
    every-step trajectory (the references)."""
    for i, (model, train, spec) in enumerate(CASES):
        run = simulate(model, dataclasses.replace(train, record=20), W0=_w0(model, train, spec))
        assert run.events is not None
        pt = analysis.phase_times(run, threshold=train.align_threshold).as_dict()
        assert pt == {k: references[i][k] for k in PHASE_KEYS}, f"case {i}"
    full = references[0]
    run = simulate(CASES[0][0], dataclasses.replace(CASES[0][1], record=20))
    coarse = analysis.phase_times(run, use_events=False).as_dict()
    assert coarse != {k: full[k] for k in PHASE_KEYS}  # the trajectory alone snaps to its grid
