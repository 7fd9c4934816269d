"""The flow engine through the public API (``TrainParams(engine="flow")``): simulate,
Simulation checkpoints, simulate_many, the CLI and the sweep (docs/model.md section 11)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory_sim as ts
from theory_sim import analysis
from theory_sim.cli import main
from theory_sim.driver import Simulation
from theory_sim.io import load_checkpoint, save_checkpoint

T_SHORT = 20.0


def flow(**kw):
    kw.setdefault("engine", "flow")
    return ts.TrainParams(**kw)


# ---------------------------------------------------------------- the default run

@pytest.fixture(scope="module")
def default_flow():
    return ts.simulate(ts.ModelParams(), flow())


def test_default_run_converges_diverse_with_flow_time_axis(default_flow):
    run = default_flow
    assert run.status == "converged" and analysis.outcome(run) == "diverse"
    assert run.time is not None and np.all(np.diff(run.flow_time) > 0)
    assert run.flow_time[-1] == pytest.approx(5912.8, rel=1e-3)
    # steps are nominal: round(t / eta)
    np.testing.assert_array_equal(run.steps, np.rint(run.flow_time / run.eta).astype(np.int64))
    assert run.stats["n_rhs"] < 5000 and run.stats["accepted_steps"] > 0
    assert run.W0 is not None and run.W.shape == (2, 512)


def test_phase_times_are_in_flow_time_and_agree_with_population_to_O_eta(default_flow):
    pt = analysis.phase_times(default_flow)
    pop = ts.simulate_many(ts.ModelParams(), ts.TrainParams(eta=1e-3))[0]
    assert (pt.leader, pt.follower) == (pop.leader, pop.follower)
    for k in ("T1", "T3"):
        tf = getattr(pt, f"{k}_flow")
        assert getattr(pt, k) == round(tf / 1e-3)
        assert abs(getattr(pop, f"{k}_flow") - tf) / tf < 5e-3  # discrete at eta = 1e-3: O(eta)
        assert getattr(pop, f"{k}_flow") == getattr(pop, k) * 1e-3


def test_log_records_keep_the_requested_points_and_the_final_state():
    train = flow(record=200, steps=None, max_flow_time=1e4)
    run = ts.simulate(ts.ModelParams(), train)
    grid = np.concatenate([[0.0], np.geomspace(1e-2, 1e4, 199)])
    kept = grid[grid <= run.flow_time[-1]]
    np.testing.assert_array_equal(run.flow_time[:kept.size], kept)
    assert run.n_points == kept.size + 1  # plus the final state
    lin = ts.simulate(ts.ModelParams(), flow(record=11, steps=10_000, record_spacing="linear"))
    np.testing.assert_allclose(lin.flow_time, np.linspace(0.0, 10.0, 11), rtol=0, atol=1e-12)
    assert lin.status == "max_steps" and lin.flow_time[-1] == 10.0


# ---------------------------------------------------------------- checkpoint and resume

def test_resume_from_a_checkpoint_file_is_bit_identical(tmp_path):
    model, train = ts.ModelParams(), flow(record=300)
    whole = ts.simulate(model, train)
    sim = Simulation(model, train)
    sim.advance(37)
    sim.advance(101)
    assert not sim.done
    save_checkpoint(sim.checkpoint(), tmp_path / "ck.npz")
    resumed = ts.resume(load_checkpoint(tmp_path / "ck.npz"))
    assert resumed.status == whole.status and resumed.stats == whole.stats
    for name in ("steps", "alignment", "norms", "E", "loss", "rho", "gram", "W", "E_final", "time"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name), err_msg=name)
    for k, v in whole.events.items():
        np.testing.assert_array_equal(resumed.events[k], v, err_msg=k)


def test_checkpoints_during_a_run_resume_bit_identically():
    model, train = ts.ModelParams(d=10**6), flow(init="reduced")
    states = []
    whole = ts.simulate(model, train, checkpoint_every=50, on_checkpoint=states.append)
    assert len(states) >= 2 and "W0" not in states[0]
    again = ts.resume(states[len(states) // 2])
    np.testing.assert_array_equal(again.E_final, whole.E_final)
    np.testing.assert_array_equal(again.alignment, whole.alignment)
    assert again.stats == whole.stats and again.W is None


# ---------------------------------------------------------------- simulate vs simulate_many

def test_simulate_many_matches_simulate_for_flow_runs():
    model = ts.ModelParams(d=64)
    trains = [flow(seed=s, eta_E=r * 1e-3) for s in (0, 1, 2) for r in (0.05, 0.3)]
    trains.append(flow(seed=3, init="reduced", head="frozen"))
    many = ts.simulate_many(model, trains, weights=True)
    for train, res in zip(trains, many, strict=True):
        run = ts.simulate(model, train)
        pt = analysis.phase_times(run)
        assert res.status == run.status
        assert res.flow_time == run.flow_time[-1]
        np.testing.assert_array_equal(res.E, run.E_final)
        assert res.flow_times() == pt.flow_times() and (res.leader, res.follower) == (pt.leader, pt.follower)
        assert (res.T1, res.T3) == (pt.T1, pt.T3)
        assert res.outcome == analysis.outcome(run, vanishing=run.status == "vanishing")
        assert res.stats["n_rhs"] == run.stats["n_rhs"]
        if run.W is not None:
            np.testing.assert_array_equal(res.W, run.W)


def test_mixed_engines_in_one_simulate_many_call():
    model = ts.ModelParams(d=32)
    res = ts.simulate_many(model, [ts.TrainParams(eta=1e-2, seed=2), flow(seed=2, eta=1e-2)])
    assert res[0].stats is None and res[1].stats is not None
    assert res[0].T1 is not None and res[1].T1_flow == pytest.approx(res[0].T1_flow, rel=0.02)


# ---------------------------------------------------------------- large d and validation

def test_reduced_init_accepts_d_1e12_and_allocates_nothing_of_size_d():
    model = ts.ModelParams(d=10**12)
    run = ts.simulate(model, flow(init="reduced", max_flow_time=10.0, record=5))
    assert run.status == "max_steps" and run.W is None and run.W0 is None
    assert run.flow_time[-1] == 10.0
    # A(0) ~ N(0, 1/d): tiny alignments
    assert np.abs(run.alignment[0]).max() < 1e-4


def test_materialising_too_large_a_d_names_the_fix():
    with pytest.raises(ts.ParamError, match="--init reduced"):
        ts.simulate(ts.ModelParams(d=2 * 10**9), ts.TrainParams())
    with pytest.raises(ts.ParamError, match="--init reduced"):
        ts.simulate(ts.ModelParams(d=2 * 10**9), flow())
    with pytest.raises(ts.ParamError, match="--init reduced"):
        ts.simulate_many(ts.ModelParams(d=2 * 10**9), ts.TrainParams())


@pytest.mark.parametrize("kw, match", [
    ({"init": "reduced"}, "init"), ({"record_spacing": "log"}, "record_spacing"),
])
def test_flow_only_options_are_refused_elsewhere(kw, match):
    with pytest.raises(ts.ParamError, match=match):
        ts.TrainParams(**kw)


@pytest.mark.parametrize("kw, match", [({"rtol": 0.0}, "rtol"), ({"rtol": 2.0}, "rtol"),
                                       ({"atol": -1.0}, "atol"), ({"init": "x"}, "init"),
                                       ({"record_spacing": "cubic"}, "record_spacing")])
def test_bad_flow_options_name_the_parameter(kw, match):
    with pytest.raises(ts.ParamError, match=match):
        flow(**kw)


def test_max_flow_time_over_eta_guard_does_not_apply_to_flow():
    with pytest.raises(ts.ParamError, match="max_flow_time / eta"):
        ts.TrainParams(eta=1e-9, max_flow_time=1e9)
    assert flow(eta=1e-9, max_flow_time=1e9).max_flow_time == 1e9


def test_w0_with_reduced_init_is_refused():
    model = ts.ModelParams(d=16)
    with pytest.raises(ts.ParamError, match="init='reduced'"):
        ts.simulate(model, flow(init="reduced"), W0=np.ones((2, 16)) / 4)


# ---------------------------------------------------------------- invariants (hypothesis)

@st.composite
def models(draw):
    m = draw(st.integers(1, 3))
    L = draw(st.integers(1, 2))
    d = draw(st.integers(m + L + 1, 16))
    P = draw(st.sampled_from([4, 6, 8]))
    k = draw(st.integers(2, P - 1))
    alpha = draw(st.sampled_from([(3.0, 2.0), (6.0, 3.0), (2.0, 1.5)]))[:L]
    pi = (1.0,) if L == 1 else (0.5, 0.5)
    return ts.ModelParams(d=d, P=P, k=k, alpha=alpha, pi=pi, sigma=draw(st.sampled_from([0.5, 1.0])), m=m)


seed_st = st.integers(0, 2**31)


def short(**kw):
    kw.setdefault("steps", int(T_SHORT / 1e-3))
    kw.setdefault("rtol", 1e-9)
    kw.setdefault("record", 20)
    return flow(**kw)


def unit_rows(model, seed):
    W0 = ts.initial_weights(model, seed)
    return W0 / np.linalg.norm(W0, axis=1, keepdims=True)


@settings(max_examples=10, deadline=None)
@given(model=models(), seed=seed_st)
def test_offdiag_head_keeps_its_diagonal(model, seed):
    run = ts.simulate(model, short(seed=seed, eta_E=1e-2), W0=unit_rows(model, seed))
    assert np.all(np.diagonal(run.E, axis1=1, axis2=2) == 1.0) and np.all(np.diag(run.E_final) == 1.0)


@settings(max_examples=10, deadline=None)
@given(model=models(), seed=seed_st, head=st.sampled_from(["offdiag", "full"]))
def test_zero_head_rate_keeps_E_the_identity(model, seed, head):
    run = ts.simulate(model, short(seed=seed, eta_E=0.0, head=head), W0=unit_rows(model, seed))
    assert np.all(run.E == np.eye(model.m)) and np.all(run.E_final == np.eye(model.m))


@settings(max_examples=10, deadline=None)
@given(model=models(), seed=seed_st, perm_seed=seed_st)
def test_relabelling_neurons_permutes_the_run(model, seed, perm_seed):
    perm = np.random.default_rng(perm_seed).permutation(model.m)
    W0 = unit_rows(model, seed)
    a, b = ts.simulate(model, short(), W0=W0), ts.simulate(model, short(), W0=W0[perm])
    np.testing.assert_allclose(b.W, a.W[perm], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b.E_final, a.E_final[perm][:, perm], rtol=1e-6, atol=1e-9)


@settings(max_examples=10, deadline=None)
@given(model=models(), seed=seed_st, j=st.integers(0, 2))
def test_flipping_a_neuron_flips_its_row_and_head_entries(model, seed, j):
    j %= model.m
    W0 = unit_rows(model, seed)
    W1 = W0.copy()
    W1[j] *= -1
    S = np.ones(model.m)
    S[j] = -1.0
    a, b = ts.simulate(model, short(), W0=W0), ts.simulate(model, short(), W0=W1)
    np.testing.assert_allclose(b.W, S[:, None] * a.W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.E_final, S[:, None] * a.E_final * S[None, :], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.abs(b.alignment), np.abs(a.alignment), rtol=1e-9, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(model=models(), seed=seed_st)
def test_weights_stay_in_the_initial_span(model, seed):
    model = dataclasses.replace(model, features="random")
    run = ts.simulate(model, short(seed=seed, head="full", eta_E=1e-2), W0=unit_rows(model, seed))
    Q, _ = np.linalg.qr(np.concatenate([ts.feature_vectors(model), run.W0.T], axis=1))
    assert np.linalg.norm(run.W - (run.W @ Q) @ Q.T) <= 1e-12 * np.linalg.norm(run.W)
    assert not np.array_equal(run.W, run.W0)


@settings(max_examples=5, deadline=None)
@given(model=models(), seed=seed_st, init=st.sampled_from(["materialised", "reduced"]))
def test_same_seed_same_run(model, seed, init):
    a, b = (ts.simulate(model, short(seed=seed, init=init)) for _ in range(2))
    for name in ("alignment", "norms", "E", "loss", "time"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.stats == b.stats


# ---------------------------------------------------------------- CLI and sweep

def test_cli_run_with_the_flow_engine(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["run", "--engine", "flow", "--d", "64", "--eta", "1e-2", "--rtol", "1e-8",
                 "--record-spacing", "log", "--quiet", "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    run = ts.load_run(out)
    pt = analysis.phase_times(run)
    assert summary["phase_times_flow"] == pt.flow_times() and summary["phase_times_steps"]["T1"] == pt.T1
    assert summary["solver"] == run.stats and summary["flow_time"] == run.flow_time[-1]
    assert run.config["train"]["rtol"] == 1e-8 and run.events["unit"] == "flow_time"
    assert "right-hand-side evaluations" in text and " ms]" in text
    assert f"t = {pt.T1_flow:<12.7g} ~ step {pt.T1}" in text


def test_cli_run_reduced_init_at_d_1e9(tmp_path, capsys):
    code = main(["run", "--engine", "flow", "--init", "reduced", "--d", "1000000000",
                 "--max-flow-time", "1e6", "--quiet", "--out", str(tmp_path / "big")])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "flow-time cap" in text


def test_sweep_with_the_flow_engine(tmp_path, capsys):
    code = main(["sweep", "--grid", "alpha1=5,6", "--seeds", "3", "--d", "64", "--engine", "flow", "--serial",
                 "--out", str(tmp_path / "sw")])
    _, err = capsys.readouterr()
    assert code == 0, err
    with open(tmp_path / "sw" / "runs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    for row in rows:
        model = ts.ModelParams(d=64, alpha=(float(row["alpha1"]), 3.0))
        res = ts.simulate_many(model, flow(seed=int(row["seed"])))[0]
        assert row["status"] == res.status and row["outcome"] == res.outcome
        if res.T1_flow is not None:
            assert float(row["T1_flow"]) == res.T1_flow and int(row["T1"]) == res.T1


# ---------------------------------------------------------------- the vanishing outcome

VANISH_D = 1000
VANISH_ALPHA = (math.log2(VANISH_D), math.log2(VANISH_D) / math.log(VANISH_D))  # fig 8's regime


def test_a_run_the_old_vanishing_rule_stopped_goes_to_its_fate():
    """Fig 8's regime at d = 1e3, seed 2: the old default stop rule called it ``vanishing``;
    integrated on, its follower learns v_2 (tests/test_paper_regime.py). With no heuristic stop
    by default, simulate and simulate_many both end it converged and diverse."""
    model = ts.ModelParams(d=VANISH_D, alpha=VANISH_ALPHA)
    train = flow(eta=1.0, eta_E=0.1, seed=2, init="reduced")
    res = ts.simulate_many(model, [train])[0]
    run = ts.simulate(model, train)
    assert res.status == run.status == "converged"
    assert res.outcome == "diverse" == analysis.outcome(run)
    assert sorted(res.features) == [0, 1]


def test_cli_run_prints_the_fate_not_a_guess(tmp_path, capsys):
    alpha = ",".join(repr(a) for a in VANISH_ALPHA)
    code = main(["run", "--engine", "flow", "--init", "reduced", "--d", str(VANISH_D), "--alpha", alpha,
                 "--eta", "1", "--eta-E", "0.1", "--seed", "2", "--out", str(tmp_path / "r")])
    assert code == 0
    assert "outcome: diverse" in capsys.readouterr().out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "converged" and summary["outcome"] == "diverse"
