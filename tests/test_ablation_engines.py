"""The mechanism ablations (docs/model.md section 12) wired through the engines: every engine
runs every variant or refuses it in one line; tau = 0 EMA runs are the online runs bit for bit;
an EMA target survives checkpoint/resume bit for bit; runs without BN end labelled.

Which hypothesis invariants of tests/test_invariants.py apply per variant:
* permuting neurons permutes the trajectory, the ``offdiag`` head keeps its diagonal, the
  population weights (and the EMA target) stay in the initial span: every variant (the loss
  is a sum over neurons of the same function, E's diagonal is masked, every update is a
  combination of the rows of W, Wbar and the features). Tested below per variant.
* the loss is invariant to scaling the weights: only with BN (without BN it is homogeneous of
  degree 6: tests/test_variants.py checks that identity instead).
* ``|rho_j| <= 1`` and ``loss = sum_j (2 - 2 rho_j)``: the first holds for every variant
  (Cauchy-Schwarz); the second only with BN (without BN the loss is ``sum_j DF + DG - 2 N``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory_sim as ts
from theory_sim import analysis, engines
from theory_sim.core import _jit
from theory_sim.driver import Simulation, resume
from theory_sim.engines.population import PopulationEngine
from theory_sim.outcome import outcome_from
from theory_sim.params import ParamError
from theory_sim.status import OUTCOMES, RUN_STATUSES, STATUS_NAMES

SMALL = ts.ModelParams(d=12, P=6, k=3, alpha=(3.0, 2.0), m=2)
VARIANTS = [
    {},
    {"norm": "none"},
    {"stopgrad": "off"},
    {"norm": "none", "stopgrad": "off"},
    {"target": "ema", "tau": 0.5},
    {"target": "ema", "tau": 0.9, "stopgrad": "off"},
    {"target": "ema", "tau": 0.5, "norm": "none"},
]


def eta_for(kw):
    return 1e-4 if kw.get("norm") == "none" else 1e-2  # no BN: the degree-6 loss needs small steps


def train(engine="population", *, steps=200, seed=3, **kw):
    kw.setdefault("eta", eta_for(kw))
    return ts.TrainParams(engine=engine, steps=steps, seed=seed, batch=16, record=steps + 1, **kw)


def assert_runs_equal(a, b):
    for name in ("steps", "alignment", "norms", "E", "loss", "rho", "gram", "W", "E_final"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.status == b.status


# ---------------------------------------------------------------- every engine x variant


@pytest.mark.parametrize("engine", sorted(engines.ENGINES))
@pytest.mark.parametrize("kw", VARIANTS,
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "paper")
def test_every_engine_runs_every_variant_or_refuses(engine, kw, single_thread):
    tp = train(engine, steps=40, **kw)
    if not engines.ENGINES[engine].variants and kw:
        with pytest.raises(ParamError, match="use --engine"):
            ts.simulate(SMALL, tp)
        return
    run = ts.simulate(SMALL, tp)
    assert run.status == "max_steps", run.message
    assert np.all(np.isfinite(run.loss)) and np.all(np.isfinite(run.W))
    assert not np.array_equal(run.W, run.W0)
    if kw.get("target") == "ema":
        assert run.W_target.shape == run.W.shape
        assert not np.array_equal(run.W_target, run.W)  # it lags behind
    else:
        assert run.W_target is None


def test_an_engine_without_variants_refuses_them_naming_the_ones_with(monkeypatch):
    class Plain(PopulationEngine):
        name = "plain"
        variants = False

    monkeypatch.setitem(engines.ENGINES, "plain", Plain)
    tp = ts.TrainParams(engine="plain", steps=5, norm="none")
    with pytest.raises(ParamError) as err:
        ts.simulate(SMALL, tp)
    msg = str(err.value)
    assert "\n" not in msg and "'plain'" in msg
    for name, eng in engines.ENGINES.items():
        assert (name in msg.split("use --engine")[1]) == eng.variants
    ts.simulate(SMALL, ts.TrainParams(engine="plain", steps=5))  # the paper's model still runs


def test_simulate_many_refuses_variants():
    with pytest.raises(ParamError, match="paper's model only"):
        ts.simulate_many(SMALL, ts.TrainParams(stopgrad="off", steps=5))


@pytest.mark.parametrize("kw, msg", [({"tau": 0.5}, "target='ema'"),
                                     ({"target": "ema", "tau": 1.0}, r"\[0, 1\)"),
                                     ({"norm": "layer"}, "one of bn, none"),
                                     ({"stopgrad": True}, "one of on, off")])
def test_bad_variant_parameters_are_one_line_errors(kw, msg):
    with pytest.raises(ParamError, match=msg):
        ts.TrainParams(**kw)


def test_cli_has_the_variant_flags():
    import argparse

    from theory_sim.cli.options import add_train_args, train_from_args

    p = argparse.ArgumentParser()
    add_train_args(p)
    args = ["--norm", "none", "--stopgrad", "off", "--target", "ema", "--tau", "0.3"]
    tp = train_from_args(p.parse_args(args))
    assert (tp.norm, tp.stopgrad, tp.target, tp.tau) == ("none", "off", "ema", 0.3)


# ---------------------------------------------------------------- tau = 0 is the online target


@pytest.mark.parametrize("engine, kw", [("population", {}), ("population", {"norm": "none"}),
                                        ("population", {"stopgrad": "off"}), ("sgd", {"norm": "none"}),
                                        ("sgd", {"stopgrad": "off"}),
                                        ("sgd", {"norm": "none", "stopgrad": "off"})])
def test_ema_with_tau_zero_is_the_online_run_bit_for_bit(engine, kw, single_thread):
    online = ts.simulate(SMALL, train(engine, **kw))
    ema = ts.simulate(SMALL, train(engine, target="ema", tau=0.0, **kw))
    assert_runs_equal(online, ema)
    np.testing.assert_array_equal(ema.W_target, ema.W)
    # and a positive tau does change it (the comparison has power)
    other = ts.simulate(SMALL, train(engine, target="ema", tau=0.5, **kw))
    assert not np.array_equal(other.W, online.W)


# ---------------------------------------------------------------- checkpoint / resume


@pytest.mark.parametrize("engine, kw", [("population", {"target": "ema", "tau": 0.7}),
                                        ("population", {"target": "ema", "tau": 0.7, "norm": "none"}),
                                        ("sgd", {"target": "ema", "tau": 0.7, "stopgrad": "off"}),
                                        ("sgd-fast", {"target": "ema", "tau": 0.7})])
def test_resumed_ema_run_is_bit_identical(engine, kw, single_thread):
    tp = train(engine, steps=120, **kw)
    states = []
    full = ts.simulate(SMALL, tp, checkpoint_every=50, on_checkpoint=states.append)
    assert len(states) == 2 and "target" in states[0]
    resumed = resume(states[0])
    assert_runs_equal(full, resumed)
    np.testing.assert_array_equal(full.W_target, resumed.W_target)
    # the target is state: resuming with the online weights in its place changes the run
    broken = dict(states[0])
    broken["target"] = broken["coords"].copy()
    assert not np.array_equal(resume(broken).W, full.W)


def test_checkpoint_without_the_new_arrays_resumes_the_paper_model(single_thread):
    tp = train(steps=120)
    states = []
    full = ts.simulate(SMALL, tp, checkpoint_every=50, on_checkpoint=states.append)
    old = {k: v for k, v in states[0].items() if k not in ("target", "norms0")}
    assert_runs_equal(full, resume(old))
    ema = ts.simulate(SMALL, train(steps=120, target="ema", tau=0.5), checkpoint_every=50,
                      on_checkpoint=states.append)
    assert ema.status == "max_steps"
    old = {k: v for k, v in states[-1].items() if k != "target"}
    with pytest.raises(ValueError, match="missing target"):
        Simulation.from_checkpoint(old)


# ---------------------------------------------------------------- no BN: labelled ends


@pytest.mark.parametrize("engine", ["population", "sgd", "sgd-fast"])
def test_no_bn_run_with_a_large_step_ends_diverged(engine, single_thread):
    run = ts.simulate(ts.ModelParams(), ts.TrainParams(engine=engine, eta=0.05, norm="none", steps=2000,
                                                       batch=64))
    assert run.status == "diverged"
    assert run.message.startswith("diverged at step") and "lower --eta" in run.message
    assert analysis.outcome(run) == "incomplete"


@pytest.mark.parametrize("engine, kw", [("population", {}), ("population", {"stopgrad": "off"}),
                                        ("population", {"target": "ema", "tau": 0.9}),
                                        ("sgd-fast", {"stopgrad": "off"})])
def test_no_bn_run_vanishes_labelled_and_finite(engine, kw, single_thread):
    model = ts.ModelParams(d=64, m=2)
    tp = ts.TrainParams(engine=engine, eta=1e-3, norm="none", max_flow_time=300.0, batch=256, seed=1, **kw)
    run = ts.simulate(model, tp)
    assert run.status == "vanished", run.message
    assert "vanished at step" in run.message
    # the stop rule's own definition, from the weights themselves
    assert np.all(np.linalg.norm(run.W, axis=1) < _jit.VANISH_TOL * np.linalg.norm(run.W0, axis=1))
    assert np.all(np.isfinite(run.loss)) and np.all(np.isfinite(run.norms))
    assert run.norms[-1].max() < run.norms[0].min()
    assert analysis.outcome(run) == "complete_collapse"


def test_exactly_zero_neuron_is_vanished_without_bn_and_degenerate_with_it():
    W0 = ts.initial_weights(SMALL, 1)
    W0[0] = 0.0
    none = ts.simulate(SMALL, train(norm="none", steps=10), W0=W0)
    bn = ts.simulate(SMALL, train(steps=10, stopgrad="off"), W0=W0)
    assert none.status == "vanished" and bn.status == "diverged"


# ---------------------------------------------------------------- outcomes


def test_complete_collapse_is_the_last_outcome_and_comes_first():
    assert OUTCOMES[-1] == "complete_collapse" and OUTCOMES[:3] == ("diverse", "collapsed", "incomplete")
    assert outcome_from([0, 1], settled=True, complete_collapse=True) == "complete_collapse"
    assert outcome_from([0, 1], settled=True) == "diverse"
    assert "vanished" in RUN_STATUSES and STATUS_NAMES[_jit.STATUS_VANISHED] == "vanished"
    codes = [v for k, v in vars(_jit).items() if k.startswith("STATUS_")]
    assert len(codes) == len(set(codes))


def test_complete_collapse_read_off_the_norms_of_a_run():
    run = ts.simulate(SMALL, train(steps=50))
    assert analysis.outcome(run) != "complete_collapse"
    shrunk = ts.Run(**{**{k: getattr(run, k) for k in ("steps", "alignment", "E", "loss", "rho", "gram",
                                                     "config", "status")},
                       "norms": run.norms * np.linspace(1.0, 0.01, run.n_points)[:, None]})
    assert analysis.is_complete_collapse(shrunk)
    assert analysis.outcome(shrunk) == "complete_collapse"


# ---------------------------------------------------------------- invariants per variant

variant_st = st.sampled_from(VARIANTS[1:])
model_st = st.builds(lambda d, m, k, sigma: ts.ModelParams(d=d, P=6, k=k, alpha=(3.0, 2.0), m=m, sigma=sigma),
                     st.integers(6, 12), st.integers(1, 3), st.integers(2, 5), st.sampled_from([0.5, 1.0]))


def unit_rows(model, seed):
    W0 = ts.initial_weights(model, seed)
    return W0 / np.linalg.norm(W0, axis=1, keepdims=True)


@settings(max_examples=15)
@given(model=model_st, kw=variant_st, seed=st.integers(0, 2**31), perm_seed=st.integers(0, 2**31),
       engine=st.sampled_from(["population", "sgd"]))
def test_permuting_neurons_permutes_every_variant(model, kw, seed, perm_seed, engine, single_thread):
    perm = np.random.default_rng(perm_seed).permutation(model.m)
    W0 = unit_rows(model, seed)
    tp = train(engine, steps=100, seed=seed, **kw)
    a, b = ts.simulate(model, tp, W0=W0), ts.simulate(model, tp, W0=W0[perm])
    assert a.status == "max_steps"
    np.testing.assert_allclose(b.alignment, a.alignment[:, perm], rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.E, a.E[:, perm][:, :, perm], rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.W, a.W[perm], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(np.diagonal(a.E, axis1=1, axis2=2), 1.0)  # offdiag head
    assert np.all(np.abs(a.rho) <= 1 + 1e-12)


@settings(max_examples=15)
@given(model=model_st, kw=variant_st, seed=st.integers(0, 2**31))
def test_population_weights_and_target_stay_in_the_initial_span(model, kw, seed):
    run = ts.simulate(model, train(steps=100, seed=seed, **kw))
    Q, _ = np.linalg.qr(np.concatenate([ts.feature_vectors(model), run.W0.T], axis=1))
    for W in (run.W, run.W_target):
        if W is not None:
            assert np.linalg.norm(W - (W @ Q) @ Q.T) <= 1e-12 * np.linalg.norm(W)
    assert not np.array_equal(run.W, run.W0)


def test_run_files_carry_the_ema_target(tmp_path):
    from theory_sim.io import load_run, save_run

    run = ts.simulate(SMALL, train(steps=30, target="ema", tau=0.5))
    back = load_run(save_run(run, tmp_path / "r"))
    np.testing.assert_array_equal(back.W_target, run.W_target)
    assert back.config["train"]["target"] == "ema" and back.config["train"]["tau"] == 0.5
    online = load_run(save_run(ts.simulate(SMALL, train(steps=30)), tmp_path / "o"))
    assert online.W_target is None
