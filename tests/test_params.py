"""Parameter validation (docs/model.md sections 1-4): every rule raises ParamError naming the parameter."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

import theory_sim as ts
from theory_sim import ModelParams, ParamError, TrainParams

NAN, INF = math.nan, math.inf


def assert_rejects(cls, name, **kwargs):
    """``cls(**kwargs)`` raises ParamError with a one-line message that starts with ``name``."""
    with pytest.raises(ParamError) as info:
        cls(**kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    assert re.match(rf"{re.escape(name)}(?!\w)", msg), f"message does not name {name!r}: {msg!r}"
    return msg


MODEL_BAD = [
    # (parameter named in the message, keyword arguments)
    ("d", {"d": 0}),
    ("d", {"d": -3}),
    ("d", {"d": 4.0}),
    ("d", {"d": True}),
    ("d", {"d": "512"}),
    ("d", {"d": None}),
    ("d", {"d": 1, "alpha": (2.0, 1.0)}),          # fewer dimensions than features
    ("P", {"P": 1, "k": 1}),
    ("P", {"P": 2.5}),
    ("P", {"P": 7, "split": "half"}),              # half split needs P even
    ("k", {"k": 1}),
    ("k", {"k": 17}),                              # > P = 16
    ("k", {"k": False}),
    ("k", {"P": 4, "k": 5}),
    ("alpha", {"alpha": ()}),
    ("alpha", {"alpha": 6.0}),
    ("alpha", {"alpha": None}),
    ("alpha[0]", {"alpha": (0.0, 3.0)}),
    ("alpha[1]", {"alpha": (6.0, -3.0)}),
    ("alpha[0]", {"alpha": (NAN, 3.0)}),
    ("alpha[1]", {"alpha": (6.0, INF)}),
    ("alpha[0]", {"alpha": ("6", "3")}),
    ("alpha[0]", {"alpha": (True, 3.0)}),
    ("pi", {"pi": (1.0,)}),                        # length differs from alpha
    ("pi", {"pi": (0.3, 0.3)}),                    # does not sum to 1
    ("pi", {"pi": (0.5, 0.5, 0.0)}),
    ("pi", {"pi": 1.0}),
    ("pi[0]", {"pi": (-0.5, 1.5)}),
    ("pi[1]", {"pi": (0.5, NAN)}),
    ("pi[0]", {"pi": (INF, 0.5)}),
    ("sigma", {"sigma": -1.0}),
    ("sigma", {"sigma": NAN}),
    ("sigma", {"sigma": INF}),
    ("sigma", {"sigma": "1"}),
    ("sigma", {"sigma": True}),
    ("m", {"m": 0}),
    ("m", {"m": 2.0}),
    ("features", {"features": "rand"}),
    ("features", {"features": None}),
    ("feature_seed", {"feature_seed": -1}),
    ("feature_seed", {"feature_seed": 1.5}),
    ("split", {"split": "halves"}),
]


@pytest.mark.parametrize("name,kwargs", MODEL_BAD, ids=[f"{n}-{kw}" for n, kw in MODEL_BAD])
def test_model_params_reject_bad_values(name, kwargs):
    assert_rejects(ModelParams, name, **kwargs)


TRAIN_BAD = [
    ("eta", {"eta": 0.0}),
    ("eta", {"eta": -1.0}),
    ("eta", {"eta": NAN}),
    ("eta", {"eta": INF}),
    ("eta", {"eta": True}),
    ("eta", {"eta": "0.1"}),
    ("eta", {"eta": None}),
    ("eta_E", {"eta_E": -1e-3}),
    ("eta_E", {"eta_E": NAN}),
    ("eta_E", {"eta_E": INF}),
    ("eta_E", {"eta_E": False}),
    ("head", {"head": "nope"}),
    ("head", {"head": None}),
    ("head", {"head": 1}),
    ("engine", {"engine": "gpu"}),
    ("batch", {"batch": 1}),
    ("batch", {"batch": 0}),
    ("batch", {"batch": 64.0}),
    ("batch", {"batch": True}),
    ("steps", {"steps": -1}),
    ("steps", {"steps": 10.5}),
    ("seed", {"seed": -1}),
    ("seed", {"seed": 2**63}),
    ("seed", {"seed": 1.0}),
    ("record", {"record": 1}),
    ("tol", {"tol": -1.0}),
    ("tol", {"tol": NAN}),
    ("align_threshold", {"align_threshold": 0.0}),
    ("align_threshold", {"align_threshold": 1.5}),
    ("align_threshold", {"align_threshold": NAN}),
    ("max_flow_time", {"max_flow_time": 0.0}),
    ("max_flow_time", {"max_flow_time": INF}),
    ("max_norm", {"max_norm": -1.0}),
    ("check_every", {"check_every": 0}),
]


@pytest.mark.parametrize("name,kwargs", TRAIN_BAD, ids=[f"{n}-{kw}" for n, kw in TRAIN_BAD])
def test_train_params_reject_bad_values(name, kwargs):
    assert_rejects(TrainParams, name, **kwargs)


def test_messages_state_the_rule_and_the_value():
    msg = assert_rejects(TrainParams, "eta", eta=-1.0)
    assert "> 0" in msg and "-1.0" in msg
    msg = assert_rejects(ModelParams, "k", k=1)
    assert "[2, 16]" in msg
    msg = assert_rejects(TrainParams, "head", head="nope")
    assert all(h in msg for h in ("offdiag", "frozen", "full")) and "'nope'" in msg


def test_param_error_is_a_value_error():
    assert issubclass(ParamError, ValueError)


def test_valid_edge_values_are_accepted_and_normalised():
    m = ModelParams(d=np.int64(2), P=2, k=2, alpha=[np.float32(1.5), 1], pi=[0.25, 0.75], sigma=0,
                    m=1)
    assert (m.d, m.P, m.k, m.m) == (2, 2, 2, 1) and type(m.d) is int
    assert m.alpha == (1.5, 1.0) and all(type(a) is float for a in m.alpha)
    assert m.pi == (0.25, 0.75) and m.sigma == 0.0 and m.L == 2
    assert ModelParams(P=4, k=4, split="half").split == "half"
    t = TrainParams(eta=np.float64(0.5), eta_E=0, batch=2, steps=0, seed=2**63 - 1, record=2,
                    align_threshold=1.0, tol=0)
    assert (t.eta, t.eta_E, t.batch, t.steps) == (0.5, 0.0, 2, 0)
    assert TrainParams(eta=0.2).eta_E == pytest.approx(0.02)      # default eta / 10


def test_defaults_are_the_documented_ones():
    m, t = ModelParams(), TrainParams()
    assert (m.d, m.P, m.k, m.alpha, m.pi, m.sigma, m.m) == (512, 16, 4, (6.0, 3.0), (0.5, 0.5), 1.0, 2)
    assert (m.features, m.split, t.head, t.engine, t.seed) == ("basis", "bernoulli", "offdiag",
                                                                "population", 1)


def test_step_budget_and_check_interval():
    t = TrainParams(eta=1e-2, max_flow_time=2000)
    assert t.max_steps == 200_000 and t.check_interval == 50
    assert TrainParams(eta=0.3, max_flow_time=1.0).max_steps == 4         # ceil
    assert TrainParams(steps=7, check_every=3).max_steps == 7
    assert TrainParams(check_every=3).check_interval == 3


@pytest.mark.parametrize("cls,field,value", [(ModelParams, "d", 3), (ModelParams, "alpha", (1.0,)),
                                             (TrainParams, "eta", 0.1), (TrainParams, "head", "full")])
def test_params_are_frozen(cls, field, value):
    p = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(p, field, value)


def test_params_round_trip_through_dicts():
    m = ModelParams(d=9, alpha=(3.0, 2.0, 1.0), pi=(0.2, 0.3, 0.5), features="random", feature_seed=4,
                    split="half")
    t = TrainParams(eta=0.05, eta_E=0.001, head="full", engine="sgd", batch=33, steps=10, seed=5)
    assert ModelParams(**m.to_dict()) == m
    assert TrainParams(**t.to_dict()) == t


def test_weights_of_the_wrong_shape_or_non_finite_are_rejected():
    model = ModelParams(d=5, m=2)
    good = np.zeros((2, 5)) + 0.1
    for bad, name in [(np.zeros((3, 5)), "W"), (np.zeros((2, 4)), "W"), (good * NAN, "W")]:
        with pytest.raises(ParamError, match=rf"^{name}\b"):
            ts.population_loss(bad, None, model)
    with pytest.raises(ParamError, match=r"^E\b"):
        ts.population_grad(good, np.eye(3), model)
    with pytest.raises(ParamError, match=r"^W\b"):
        ts.simulate(model, TrainParams(steps=1), W0=np.zeros((2, 6)))
    with pytest.raises(ParamError, match=r"^batch\b"):
        ts.sgd_gradient(good, None, model, batch=1)
    with pytest.raises(ParamError, match=r"^seed\b"):
        ts.sgd_gradient(good, None, model, seed=-2)
    with pytest.raises(TypeError):
        ts.simulate(model.to_dict(), TrainParams())


# ---------------------------------------------------------------- the parameter registry

def test_default_pi_is_uniform_for_any_number_of_features():
    assert ModelParams(alpha=(6, 3, 1)).pi == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert ModelParams(alpha=(5.0,)).pi == (1.0,)
    assert ModelParams().pi == (0.5, 0.5)
    assert_rejects(ModelParams, "pi", alpha=(6, 3, 1), pi=(0.5, 0.5))


def test_registry_lists_every_field_once():
    from theory_sim.params import PARAMETERS

    for owner, cls in (("model", ModelParams), ("train", TrainParams)):
        want = [f.name for f in dataclasses.fields(cls)]
        assert [p.name for p in PARAMETERS if p.owner == owner] == want
    assert len({p.flag for p in PARAMETERS}) == len(PARAMETERS)


def test_cli_options_carry_every_registered_parameter():
    import argparse

    from theory_sim.cli.options import add_model_args, add_train_args, model_from_args, train_from_args

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    add_train_args(parser)
    args = parser.parse_args(["--alpha", "6,3,1", "--max-norm", "50", "--check-every", "7", "--eta-E", "0.02",
                              "--feature-seed", "3", "--engine", "sgd-fast", "--steps", "9"])
    model, train = model_from_args(args), train_from_args(args)
    assert model.alpha == (6.0, 3.0, 1.0) and model.pi == ModelParams(alpha=(6, 3, 1)).pi
    assert model.feature_seed == 3
    assert (train.max_norm, train.check_every, train.eta_E, train.engine, train.steps) == (
        50.0, 7, 0.02, "sgd-fast", 9)
    defaults = parser.parse_args([])
    assert model_from_args(defaults) == ModelParams() and train_from_args(defaults) == TrainParams()


def test_sigma_whose_closed_form_overflows_is_refused_with_the_limit():
    import numpy as np

    from theory_sim.params import MAX_SIGMA

    ModelParams(sigma=MAX_SIGMA / 2)  # still finite: no error
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.float64(MAX_SIGMA * 4) ** 12)  # the limit is where float64 runs out
    with pytest.raises(ParamError, match=r"sigma must be at most .*sigma\^12"):
        ModelParams(sigma=1e200)
