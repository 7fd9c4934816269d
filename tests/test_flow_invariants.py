"""Invariants of the flow kernel (hypothesis, small sizes), its stop rules, and
checkpointing: a run split into many kernel calls ends bit-identical to one call."""

from __future__ import annotations

import math

import flow_support as fs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory_sim as ts
from theory_sim.core import _jit
from theory_sim.core.flow import termination
from theory_sim.engines import flow as engine

T_SHORT = 20.0


@st.composite
def models(draw):
    m = draw(st.integers(1, 3))
    L = draw(st.integers(1, 2))
    d = draw(st.integers(m + L, 16))
    P = draw(st.sampled_from([4, 6, 8]))
    k = draw(st.integers(2, P - 1))
    alpha = draw(st.sampled_from([(3.0, 2.0), (6.0, 3.0), (2.0, 1.5)]))[:L]
    pi = (1.0,) if L == 1 else (0.5, 0.5)
    sigma = draw(st.sampled_from([0.5, 1.0, 1.5]))
    return ts.ModelParams(d=d, P=P, k=k, alpha=alpha, pi=pi, sigma=sigma, m=m)


seed_st = st.integers(0, 2**31)


def start(model, seed):
    """Rows of norm 1 (as tests/test_invariants.py's ``stable_init``)."""
    B, Vr = fs.reduced_start(model, seed)
    return B / np.linalg.norm(B, axis=1, keepdims=True), Vr


def run(model, B, Vr, train=None, **kw):
    kw.setdefault("rtol", 1e-9)
    kw.setdefault("atol", 1e-13)
    kw.setdefault("t_max", T_SHORT)
    return fs.integrate_flow(model, train or ts.TrainParams(), B0=B, Vr=Vr, **kw)


@settings(max_examples=15)
@given(model=models(), seed=seed_st)
def test_offdiag_head_keeps_its_diagonal_exactly_one(model, seed):
    B, Vr = start(model, seed)
    res = run(model, B, Vr)
    assert np.all(np.diag(res["E"]) == 1.0)


@settings(max_examples=15)
@given(model=models(), seed=seed_st, head=st.sampled_from(["offdiag", "full"]))
def test_zero_head_rate_keeps_E_the_identity(model, seed, head):
    B, Vr = start(model, seed)
    res = run(model, B, Vr, ts.TrainParams(eta_E=0.0, head=head))
    assert np.array_equal(res["E"], np.eye(model.m))


@settings(max_examples=15)
@given(model=models(), seed=seed_st, perm_seed=seed_st)
def test_relabelling_neurons_permutes_the_run(model, seed, perm_seed):
    perm = np.random.default_rng(perm_seed).permutation(model.m)
    B, Vr = start(model, seed)
    a, b = run(model, B, Vr), run(model, B[perm], Vr)
    np.testing.assert_allclose(b["B"], a["B"][perm], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b["E"], a["E"][perm][:, perm], rtol=1e-6, atol=1e-9)
    for key in ("t1", "t2"):
        np.testing.assert_allclose(b["events"][key], a["events"][key][perm], rtol=1e-6)


@settings(max_examples=15)
@given(model=models(), seed=seed_st, j=st.integers(0, 2))
def test_flipping_a_neuron_flips_its_row_and_head_entries(model, seed, j):
    j = j % model.m
    B, Vr = start(model, seed)
    B1 = B.copy()
    B1[j] *= -1
    S = np.ones(model.m)
    S[j] = -1.0
    a, b = run(model, B, Vr), run(model, B1, Vr)
    np.testing.assert_allclose(b["B"], S[:, None] * a["B"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b["E"], S[:, None] * a["E"] * S[None, :], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b["events"]["t1"], a["events"]["t1"], rtol=1e-9)


@settings(max_examples=10)
@given(model=models(), seed=seed_st)
def test_same_seed_same_run(model, seed):
    a = run(model, *fs.reduced_start(model, seed, "reduced"))
    b = run(model, *fs.reduced_start(model, seed, "reduced"))
    assert np.array_equal(a["B"], b["B"]) and np.array_equal(a["E"], b["E"])
    assert a["n_rhs"] == b["n_rhs"]


def _split(model, train, B, Vr, chunks, **kw):
    st_ = fs.new_state(model, train, B0=B, Vr=Vr, **kw)
    i = 0
    while st_.running:
        fs.advance(st_, chunks[i % len(chunks)])
        i += 1
    return fs.result(st_), i


def _assert_identical(a, b):
    for key in ("B", "E", "t", "status_code", "n_rhs", "n_steps", "n_rejected", "n_jac", "n_switches"):
        assert np.array_equal(a[key], b[key]), key
    for key in a["events"]:
        assert np.array_equal(a["events"][key], b["events"][key]), key
    for key in a["records"]:
        assert np.array_equal(a["records"][key], b["records"][key]), key


def test_split_into_calls_is_bit_identical():
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = fs.reduced_start(model, 1)
    t_rec = np.linspace(0.0, 6000.0, 301)
    one, n1 = _split(model, train, B, Vr, [10**9], t_record=t_rec)
    many, n2 = _split(model, train, B, Vr, [1, 3, 7], t_record=t_rec)
    assert n1 == 1 and n2 > 100
    assert one["status"] == "converged"
    _assert_identical(one, many)


def test_split_into_calls_is_bit_identical_through_stiff_switching():
    model, train, B, Vr, T1 = vanishing_case()
    kw = {"t_max": 300 * T1, "vanish_persist": math.inf, "t_record": np.geomspace(1.0, 300 * T1, 50)}
    one, _ = _split(model, train, B, Vr, [10**9], **kw)
    many, n2 = _split(model, train, B, Vr, [1, 2, 5], **kw)
    assert one["n_switches"] >= 1 and n2 > 100
    _assert_identical(one, many)


def test_integrate_until_t1_and_a_time_then_on_is_bit_identical():
    """``engines.flow.integrate`` stopped at the first T1 and at a flow time continues exactly."""
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = fs.reduced_start(model, 1)
    one = fs.integrate_flow(model, train, B0=B, Vr=Vr)
    st_ = fs.new_state(model, train, B0=B, Vr=Vr)
    assert engine.integrate(st_, until="T1") == _jit.STATUS_RUNNING
    assert np.any(st_.t1 >= 0) and st_.time == pytest.approx(one["phase_times"]["T1"], rel=0.2)
    assert engine.integrate(st_, until=1000.0) == _jit.STATUS_RUNNING and 1000.0 <= st_.time < 2000.0
    assert engine.integrate(st_, until=1000.0) == _jit.STATUS_RUNNING  # already there: no step
    assert engine.integrate(st_, steps_per_call=7) == _jit.STATUS_CONVERGED
    _assert_identical(one, fs.result(st_))
    with pytest.raises(ts.ParamError, match="until"):
        engine.integrate(st_, until="T9")


@pytest.mark.parametrize("args, code", [
    ((_jit.STATUS_NONFINITE, True, _jit.STATUS_CONVERGED, True, True), _jit.STATUS_NONFINITE),
    ((_jit.STATUS_RUNNING, True, _jit.STATUS_CONVERGED, True, True), _jit.STATUS_STEP_UNDERFLOW),
    ((_jit.STATUS_RUNNING, False, _jit.STATUS_RUNAWAY, True, True), _jit.STATUS_RUNAWAY),
    ((_jit.STATUS_RUNNING, False, _jit.STATUS_CONVERGED, True, True), _jit.STATUS_CONVERGED),
    ((_jit.STATUS_RUNNING, False, _jit.STATUS_RUNNING, True, True), _jit.STATUS_VANISHING),
    ((_jit.STATUS_RUNNING, False, _jit.STATUS_RUNNING, False, True), _jit.STATUS_MAX_FLOW_TIME),
    ((_jit.STATUS_RUNNING, False, _jit.STATUS_RUNNING, False, False), _jit.STATUS_RUNNING),
])
def test_termination_precedence(args, code):
    assert termination.stop_code(*args) == code


# ---------------------------------------------------------------- stop rules

VANISH_SEED = 1


def vanishing_case():
    """docs/model.md section 10's vanishing follower: d = 1e4, alpha = (6, 0.651),
    eta_E / eta = 0.109."""
    model = ts.ModelParams(d=10_000, alpha=(6.0, 0.651))
    train = ts.TrainParams(eta=1e-3, eta_E=1.09e-4, max_flow_time=1e9)
    B, Vr = fs.reduced_start(model, VANISH_SEED, "reduced")
    pre = fs.integrate_flow(model, train, B0=B, Vr=Vr, t_max=1e5, vanish_persist=math.inf)
    return model, train, B, Vr, pre["phase_times"]["T1"]


def test_vanishing_follower_is_recognised_when_asked():
    """The vanishing rule is an opt-in early stop (off by default: ``test_flow_fate``)."""
    model, train, B, Vr, T1 = vanishing_case()
    res = fs.integrate_flow(model, train, B0=B, Vr=Vr, vanish_persist=fs.VANISH_PERSIST_OPT_IN)
    assert res["status"] == "vanishing", res["status"]
    assert res["status_code"] == _jit.STATUS_VANISHING
    fol = 1 - res["phase_times"]["leader"]
    # the follower really is shrinking: continue 10x longer with the rule off
    later = fs.integrate_flow(model, train, B0=B, Vr=Vr, t_max=10 * res["t"], vanish_persist=math.inf)
    assert np.linalg.norm(later["B"][fol]) < np.linalg.norm(res["B"][fol])
    assert later["status"] == "max_steps"


@pytest.mark.parametrize("seed", range(16))
def test_runs_that_converge_within_the_cap_are_never_flagged(seed):
    """At the defaults (cap 2e5): a run whose follower shrinks for a while and escapes
    before the cap (seed 6 at 1.8e5, seed 2 at 1.98e5) must be left to converge."""
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = fs.reduced_start(model, seed)
    off = fs.integrate_flow(model, train, B0=B, Vr=Vr)
    on = fs.integrate_flow(model, train, B0=B, Vr=Vr, vanish_persist=fs.VANISH_PERSIST_OPT_IN)
    if off["status"] == "converged":
        assert on["status"] == "converged" and on["t"] == off["t"]
    else:
        assert on["status"] in ("max_steps", "vanishing")


def test_max_flow_time_ends_exactly_there():
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = fs.reduced_start(model, 1)
    res = fs.integrate_flow(model, train, B0=B, Vr=Vr, t_max=123.25)
    assert res["t"] == 123.25 and res["status"] == "max_steps"
    assert res["status_code"] == _jit.STATUS_MAX_FLOW_TIME


def test_runaway_norm_is_reported():
    model, train = ts.ModelParams(), ts.TrainParams(max_norm=1.5)
    B, Vr = fs.reduced_start(model, 1)
    res = fs.integrate_flow(model, train, B0=2.0 * B / np.linalg.norm(B, axis=1, keepdims=True), Vr=Vr)
    assert res["status_code"] == _jit.STATUS_RUNAWAY


def test_nonfinite_start_is_refused_and_zero_row_fails():
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = fs.reduced_start(model, 1)
    B[0, 0] = np.nan
    with pytest.raises(ts.ParamError, match="finite"):
        fs.integrate_flow(model, train, B0=B, Vr=Vr)
    B, Vr = fs.reduced_start(model, 1)
    B[0] = 0.0
    res = fs.integrate_flow(model, train, B0=B, Vr=Vr)
    assert res["status"] == "diverged"


def test_bad_options_name_the_fix():
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = fs.reduced_start(model, 1)
    with pytest.raises(ts.ParamError, match="rtol"):
        fs.integrate_flow(model, train, B0=B, Vr=Vr, rtol=0.0)
    with pytest.raises(ts.ParamError, match="t_record"):
        fs.integrate_flow(model, train, B0=B, Vr=Vr, t_record=[2.0, 1.0])
    with pytest.raises(ts.ParamError, match="Vr"):
        fs.integrate_flow(model, train, B0=B, Vr=Vr[:, :1])


def test_a_checkpoint_of_another_solver_layout_is_refused():
    from theory_sim.driver import Simulation

    sim = Simulation(ts.ModelParams(), ts.TrainParams(engine="flow", max_flow_time=100.0))
    sim.advance(10)
    for key, cut in (("ist", 16), ("fst", 8)):
        ck = sim.checkpoint()
        ck[key] = ck[key][:cut]
        with pytest.raises(ValueError, match=f"checkpoint array {key} has shape"):
            Simulation.from_checkpoint(ck)
    assert Simulation.from_checkpoint(sim.checkpoint()).run().status == sim.run().status
