"""Frozen, validated parameter objects (docs/model.md sections 1-4).

Every value is checked where it enters; a bad one raises :class:`ParamError`
(a ``ValueError``) whose one-line message names the parameter, the allowed range
and the value received, which the CLI prints as is.
"""

from __future__ import annotations

import math
import sys
from dataclasses import KW_ONLY, asdict, dataclass, fields
from numbers import Integral, Real

HEADS = ("offdiag", "frozen", "full")
INITS = ("materialised", "reduced")
RECORD_SPACINGS = ("linear", "log")
FEATURES = ("basis", "random")
SPLITS = ("bernoulli", "half")
NORMS = ("bn", "none")
STOPGRADS = ("on", "off")
TARGETS = ("online", "ema")
"""Mechanism ablations (docs/model.md section 12); the first of each is the paper's model."""

# Defaults where the paper's constants are unknown (docs/model.md: [choice]).
DEFAULT_MAX_FLOW_TIME = 2.0e5
"""Cap on ``eta * steps`` when ``steps=None`` (discrete engines): the follower's escape from
its ``O(1/sqrt(d))`` initial alignment can take very long (docs/model.md section 10)."""
DEFAULT_FLOW_MAX_FLOW_TIME = 1.0e9
"""The flow engine's cap on flow time at ``d <= 512``, scaled by ``(d / 512)^2`` above (phase I
lasts O(d^2), docs/model.md section 10): its cost grows like ``log T``, so the cap can sit far
beyond the slowest escape seen at the defaults (~1e7)."""
MAX_D = 10**12
"""Largest ``d``: the flow engine with ``init="reduced"`` allocates nothing of size ``d``."""
DEFAULT_RTOL = 1e-7
"""Flow engine: relative tolerance of the adaptive step (scipy's RK45 at 1e-7 reproduces the
discrete engine's phase times to O(eta), docs/model.md section 11)."""
ATOL_FACTOR = 1e-7
"""Flow engine: ``atol=None`` means ``ATOL_FACTOR`` times the RMS of the initial ``A = W(0) V``
(``~ 1/sqrt(d)``), the smallest scale the dynamics must resolve (the escape from the initial
alignment); a fixed tiny ``atol`` makes the solver track components decaying to zero."""
DEFAULT_TOL = 1e-5
"""Convergence: flow-time speed of the weights and head below this (see core.population)."""
MAX_STEPS = 10**15
"""No run takes more steps than this (int64-safe; ~3 years at 0.1 us/step)."""
MAX_ELEMENTS = 10**9
"""Bound on any one array a run allocates (8 GB of float64): larger inputs are refused
up front with a clear message instead of failing inside numpy or numba."""
DEFAULT_ALIGN_THRESHOLD = 0.9
"""A neuron has learned feature l when ``|c_jl| >= 0.9`` (docs/model.md section 9)."""
MAX_ALPHA = sys.float_info.max ** (1.0 / 6.0)
"""Largest feature strength: the kernels take ``lam_l = pi_l alpha_l^6`` (docs/model.md
section 6), which must be a finite float64 (about 2.38e51)."""
DEFAULT_HEAD_TOL = 0.01
"""T4: the head has returned to identity when ``|E - I|_F`` is below this (docs/model.md section 9)."""
MAX_SIGMA = sys.float_info.max ** (1.0 / 12.0)
"""Largest noise scale: the closed form multiplies ``DF_j DG_j``, each of order ``sigma^6``
(docs/model.md section 6), so ``sigma^12`` must fit in float64."""


class ParamError(ValueError):
    """A parameter is out of its allowed range; the message says which and how to fix it."""


def uniform_pi(L: int) -> tuple:
    """The default feature probabilities: ``1/L`` each (the one home of this rule)."""
    return tuple(1.0 / L for _ in range(L))


def _engine_names() -> tuple:
    from .engines import ENGINES  # the engines import this module: read the registry late

    return tuple(ENGINES)


def __getattr__(name):
    if name == "ENGINES":  # the engine names, read from the one registry (engines.ENGINES)
        return _engine_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fail(name, rule, value):
    raise ParamError(f"{name} must be {rule} (got {value!r})")


def _int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, Integral):
        _fail(name, "an integer", value)
    if value < lo or (hi is not None and value > hi):
        rule = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        _fail(name, rule, value)
    return int(value)


def _real(name, value, *, positive=False, nonneg=False):
    if isinstance(value, bool) or not isinstance(value, Real):
        _fail(name, "a real number", value)
    value = float(value)
    if not math.isfinite(value):
        _fail(name, "finite", value)
    if positive and value <= 0:
        _fail(name, "> 0 and finite", value)
    if nonneg and value < 0:
        _fail(name, ">= 0 and finite", value)
    return value


def _choice(name, value, allowed):
    if value not in allowed:
        _fail(name, "one of " + ", ".join(allowed), value)
    return value


def _vector(name, value):
    try:
        return tuple(value)
    except TypeError:
        _fail(name, "a sequence of numbers", value)


@dataclass(frozen=True)
class ModelParams:
    """The data model and network shape (docs/model.md sections 1-3).

    Parameters
    ----------
    d : ambient dimension of a patch.
    P : patches per sample; ``k`` of them carry the feature (``2 <= k <= P``).
    alpha : feature strengths ``alpha_1 > alpha_2 > ...`` (length ``L``).
    pi : probability of each feature (length ``L``, sums to 1); ``None``: uniform, ``1/L`` each.
    sigma : standard deviation of the noise patches.
    m : number of neurons (rows of ``W``).
    features : ``"basis"`` (``v_l = e_l``) or ``"random"`` (a random orthonormal set
        drawn from ``feature_seed``).
    feature_seed : seed of the random features (keyword only).
    split : ``"bernoulli"`` (each patch to view 1 with probability 1/2, the paper's)
        or ``"half"`` (exactly ``P // 2`` patches, ``P`` even); keyword only.
    """

    d: int = 512
    P: int = 16
    k: int = 4
    alpha: tuple = (6.0, 3.0)
    pi: tuple | None = None
    sigma: float = 1.0
    m: int = 2
    features: str = "basis"
    _: KW_ONLY
    feature_seed: int = 0
    split: str = "bernoulli"

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "d", _int("d", self.d, 1, MAX_D))
        set_(self, "P", _int("P", self.P, 2, MAX_ELEMENTS))
        set_(self, "k", _int("k", self.k, 2, self.P))
        alpha = _vector("alpha", self.alpha)
        if len(alpha) < 1:
            _fail("alpha", "a non-empty sequence", self.alpha)
        alpha = tuple(_real(f"alpha[{i}]", a, positive=True) for i, a in enumerate(alpha))
        for i, a in enumerate(alpha):  # pi * alpha^6 overflows beyond: inf, then NaN in the kernels
            if a > MAX_ALPHA:
                _fail(f"alpha[{i}]", f"at most {MAX_ALPHA:.4g} (pi * alpha^6 must fit in float64)", a)
        set_(self, "alpha", alpha)
        pi = uniform_pi(len(alpha)) if self.pi is None else _vector("pi", self.pi)
        if len(pi) != len(alpha):
            _fail("pi", f"of the same length as alpha ({len(alpha)})", self.pi)
        pi = tuple(_real(f"pi[{i}]", p, nonneg=True) for i, p in enumerate(pi))
        if abs(sum(pi) - 1.0) > 1e-9:
            _fail("pi", "a probability vector (entries >= 0 summing to 1)", self.pi)
        set_(self, "pi", pi)
        set_(self, "sigma", _real("sigma", self.sigma, nonneg=True))
        if self.sigma > MAX_SIGMA:
            _fail("sigma", f"at most {MAX_SIGMA:.4g} (sigma^12 must fit in float64)", self.sigma)
        set_(self, "m", _int("m", self.m, 1, 10**4))
        _choice("features", self.features, FEATURES)
        set_(self, "feature_seed", _int("feature_seed", self.feature_seed, 0))
        _choice("split", self.split, SPLITS)
        if self.split == "half" and self.P % 2:
            _fail("P", "even with split='half'", self.P)
        if len(alpha) > self.d:
            _fail("d", f">= the number of features L = {len(alpha)}", self.d)

    @property
    def L(self) -> int:
        """Number of features."""
        return len(self.alpha)

    def check_materialised(self) -> None:
        """Raise ParamError if ``W`` (m x d) or the features (d x L) would not fit in memory
        (every run that materialises ``W``; only ``engine="flow", init="reduced"`` does not)."""
        size = max(self.m, self.L) * self.d
        if size > MAX_ELEMENTS:
            _fail("m * d", f"at most {MAX_ELEMENTS:.0e} to materialise the weights (use --engine flow "
                  "--init reduced for larger d)", size)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["alpha"] = list(self.alpha)
        out["pi"] = list(self.pi)
        return out


@dataclass(frozen=True)
class TrainParams:
    """How to train (docs/model.md section 4).

    Parameters
    ----------
    eta : learning rate of ``W``.
    eta_E : learning rate of the trainable entries of ``E``; ``None`` means ``eta / 10``.
    head : ``"offdiag"`` (the paper: diagonal fixed at 1), ``"frozen"`` (``E = I``,
        no prediction head) or ``"full"`` (every entry trainable).
    engine : ``"population"`` (exact GD on the closed-form loss), ``"sgd"``
        (online mini-batch SGD with materialised patches) or ``"sgd-fast"`` (the same
        SGD process, exact in distribution, sampling only the projections the forward
        pass needs: docs/model.md section 8).
    batch : mini-batch size of the ``sgd`` engine (>= 2: batch normalisation).
    steps : number of steps; ``None`` runs until converged, capped at
        ``ceil(max_flow_time / eta)`` steps.
    seed : seed of ``W(0)`` and of the SGD samples. The default is 1, not 0: at the
        default model, seed 0 draws a second neuron with ``|c| ~ 0.006`` on both
        features, whose cubic-order escape takes longer than the default cap, so
        the default run would not show the paper's story (outcomes depend on the
        seed: docs/model.md section 10; the figures map how).
    record : trajectory points kept (at most this many, at least half, evenly
        spaced in steps; the final step is always kept).

    Keyword-only: ``tol`` (convergence speed, per unit flow time),
    ``align_threshold``, ``max_flow_time`` (``None``: ``DEFAULT_MAX_FLOW_TIME`` = 2e5; for
    the flow engine it stays ``None`` and means ``DEFAULT_FLOW_MAX_FLOW_TIME`` = 1e9 times
    ``max(1, d / 512)^2``, see ``flow_max_time``), ``max_norm`` (a row norm
    beyond this is a divergence), ``check_every`` (steps between convergence checks;
    ``None``: about every 0.5 unit of flow time).

    Flow engine only (keyword-only): ``rtol`` (default ``DEFAULT_RTOL`` = 1e-7) and ``atol``
    (``None``: ``ATOL_FACTOR`` = 1e-7 times the RMS of ``A(0)``, ~1e-7/sqrt(d)) of the
    adaptive step; ``init``: ``"materialised"`` draws ``W(0)`` from ``seed`` exactly as the
    other engines do (the same seed gives the same ``W(0)`` in every engine; O(m d)) or
    ``"reduced"`` draws its reduced coordinates from the same law at O(m^2) cost for any
    ``d`` (``theory_sim.initial_law``; the same seed does *not* give the materialised
    ``W(0)``, only a draw from the same law; ``d`` up to 1e12); ``record_spacing``:
    ``"linear"`` or ``"log"`` in flow time (``None``: linear for the discrete engines,
    log for the flow engine, whose runs span decades; ``"log"`` is the flow engine's only).
    """

    eta: float = 1e-3
    eta_E: float | None = None
    head: str = "offdiag"
    engine: str = "population"
    batch: int = 256
    steps: int | None = None
    seed: int = 1
    record: int = 1000
    _: KW_ONLY
    tol: float = DEFAULT_TOL
    align_threshold: float = DEFAULT_ALIGN_THRESHOLD
    max_flow_time: float | None = None
    max_norm: float = 1e6
    check_every: int | None = None
    rtol: float = DEFAULT_RTOL
    atol: float | None = None
    init: str = "materialised"
    record_spacing: str | None = None
    norm: str = "bn"
    stopgrad: str = "on"
    target: str = "online"
    tau: float = 0.0

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "eta", _real("eta", self.eta, positive=True))
        if self.eta_E is None:
            set_(self, "eta_E", self.eta / 10.0)
        else:
            set_(self, "eta_E", _real("eta_E", self.eta_E, nonneg=True))
        _choice("head", self.head, HEADS)
        _choice("engine", self.engine, _engine_names())
        set_(self, "batch", _int("batch", self.batch, 2, MAX_ELEMENTS))
        if self.steps is not None:
            set_(self, "steps", _int("steps", self.steps, 0, MAX_STEPS))
        set_(self, "seed", _int("seed", self.seed, 0, 2**63 - 1))
        set_(self, "record", _int("record", self.record, 2, 10**7))
        set_(self, "tol", _real("tol", self.tol, nonneg=True))
        thr = _real("align_threshold", self.align_threshold)
        if not 0.0 < thr <= 1.0:
            _fail("align_threshold", "in (0, 1]", thr)
        set_(self, "align_threshold", thr)
        flow = self.engine == "flow"
        if self.max_flow_time is None and not flow:  # the flow engine's default depends on d
            set_(self, "max_flow_time", DEFAULT_MAX_FLOW_TIME)
        if self.max_flow_time is not None:
            set_(self, "max_flow_time", _real("max_flow_time", self.max_flow_time, positive=True))
        set_(self, "max_norm", _real("max_norm", self.max_norm, positive=True))
        if self.check_every is not None:
            set_(self, "check_every", _int("check_every", self.check_every, 1, MAX_STEPS))
        set_(self, "rtol", _real("rtol", self.rtol, positive=True))
        if not self.rtol < 1.0:
            _fail("rtol", "in (0, 1)", self.rtol)
        if self.atol is not None:
            set_(self, "atol", _real("atol", self.atol, nonneg=True))
        _choice("init", self.init, INITS)
        if self.init == "reduced" and not flow:
            _fail("init", "'materialised' unless engine='flow' (only the flow engine runs in reduced "
                  "coordinates without W)", self.init)
        if self.record_spacing is None:
            set_(self, "record_spacing", "log" if flow else "linear")
        _choice("record_spacing", self.record_spacing, RECORD_SPACINGS)
        if self.record_spacing == "log" and not flow:
            _fail("record_spacing", "'linear' unless engine='flow' (the discrete engines record at "
                  "multiples of a stride)", self.record_spacing)
        if flow and self.steps is not None and self.steps * self.eta > 1e300:
            _fail("steps * eta", "finite", self.steps * self.eta)
        if not flow and self.steps is None and self.max_flow_time < self.eta:
            # ceil(max_flow_time / eta) would still take one whole step, past the cap
            _fail("max_flow_time", f">= eta = {self.eta:g} (one step of the {self.engine} engine)",
                  self.max_flow_time)
        if not flow and self.steps is None and self.max_flow_time / self.eta > MAX_STEPS:
            _fail("max_flow_time / eta", f"at most {MAX_STEPS:.0e} steps (raise eta or give --steps)",
                  self.max_flow_time / self.eta)
        _choice("norm", self.norm, NORMS)
        _choice("stopgrad", self.stopgrad, STOPGRADS)
        _choice("target", self.target, TARGETS)
        tau = _real("tau", self.tau)
        if not 0.0 <= tau < 1.0:
            _fail("tau", "in [0, 1)", tau)
        if tau != 0.0 and self.target != "ema":
            _fail("tau", "0 unless target='ema' (the EMA rate; give --target ema)", tau)
        set_(self, "tau", tau)

    @property
    def max_steps(self) -> int:
        """The step budget: ``steps``, or the flow-time cap when ``steps`` is None."""
        if self.steps is not None:
            return self.steps
        if self.engine == "flow":  # the cap is in flow time; the solver's steps are not bounded
            return MAX_STEPS
        return int(math.ceil(self.max_flow_time / self.eta))

    def flow_max_time(self, d: int) -> float:
        """The flow-time cap of a run at dimension ``d`` (``max_flow_time`` or its default)."""
        if self.max_flow_time is not None:
            return self.max_flow_time
        if self.engine == "flow":
            return DEFAULT_FLOW_MAX_FLOW_TIME * max(1.0, d / 512.0) ** 2
        return DEFAULT_MAX_FLOW_TIME

    @property
    def check_interval(self) -> int:
        """Steps between convergence checks."""
        if self.check_every is not None:
            return self.check_every
        return max(1, int(round(0.5 / self.eta)))

    def to_dict(self) -> dict:
        out = asdict(self)
        return out


# ---------------------------------------------------------------- the parameter registry

@dataclass(frozen=True)
class Parameter:
    """One field of ModelParams or TrainParams, as the CLI and the sweeps see it.

    ``owner``: ``"model"`` or ``"train"``; ``kind``: ``int``, ``float``, ``str`` or
    ``"floats"`` (a comma-separated vector); ``default``: the dataclass default
    (``None`` where it is computed, e.g. ``pi`` uniform, ``eta_E = eta / 10``);
    ``choices``: the allowed strings, or ``None``; ``sweepable``: a sweep may grid it
    (``alpha``/``pi`` entry by entry); ``flag``: the CLI option.
    """

    name: str
    owner: str
    kind: object
    help: str
    choices: tuple | None = None
    sweepable: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def default(self):
        cls = ModelParams if self.owner == "model" else TrainParams
        return next(f.default for f in fields(cls) if f.name == self.name)

    @property
    def choice_list(self) -> tuple | None:
        """The allowed values (engines: read from the registry at call time)."""
        return _engine_names() if self.name == "engine" else self.choices


PARAMETERS = (
    Parameter("d", "model", int, "patch dimension"),
    Parameter("P", "model", int, "patches per sample"),
    Parameter("k", "model", int, "feature patches per sample, 2..P"),
    Parameter("alpha", "model", "floats", "feature strengths, comma-separated"),
    Parameter("pi", "model", "floats", "feature probabilities, comma-separated (default uniform)"),
    Parameter("sigma", "model", float, "noise std"),
    Parameter("m", "model", int, "neurons"),
    Parameter("features", "model", str, "basis (v_l = e_l) or random orthonormal features", FEATURES),
    Parameter("feature_seed", "model", int, "seed of --features random"),
    Parameter("split", "model", str, "view split: each patch w.p. 1/2 (bernoulli) or exactly half", SPLITS),
    Parameter("eta", "train", float, "learning rate of W"),
    Parameter("eta_E", "train", float, "learning rate of the head (default eta/10)"),
    Parameter("head", "train", str, "offdiag: the paper's head; frozen: E = I; full: every entry trained",
              HEADS),
    Parameter("engine", "train", str, "the engine (one of engines.ENGINES; each has its own help)"),
    Parameter("batch", "train", int, "SGD batch size", sweepable=False),
    Parameter("steps", "train", int,
              "number of steps (default: until converged, capped at max-flow-time/eta)"),
    Parameter("seed", "train", int, "seed of W(0) and of the SGD samples", sweepable=False),
    Parameter("record", "train", int, "trajectory points kept: N requested times plus the final state "
              "(flow); between N/2 and N evenly spaced steps plus the final state (other engines)",
              sweepable=False),
    Parameter("tol", "train", float, "stop once every neuron has learned a feature and the gradient's "
              "flow-time speed sqrt(sum_j |dL/dw_j|^2/|w_j|^2) + (eta_E/eta)|dL/dE| is below this"),
    Parameter("align_threshold", "train", float, "|c_jl| that counts as learned"),
    Parameter("max_flow_time", "train", float, "cap on the flow time eta*steps when --steps is not given "
              "(default 2e5; --engine flow: 1e9 x max(1, d/512)^2)"),
    Parameter("max_norm", "train", float, "a row norm beyond this is a divergence"),
    Parameter("check_every", "train", int, "steps between convergence checks (default: every 0.5 flow time)"),
    Parameter("rtol", "train", float, "flow engine: relative tolerance of the adaptive step"),
    Parameter("atol", "train", float, "flow engine: absolute tolerance (default 1e-7 x RMS of A(0))"),
    Parameter("init", "train", str, "materialised: W(0) from --seed as every engine draws it; reduced "
              "(flow engine): its reduced coordinates from the same law, any d", INITS, sweepable=False),
    Parameter("record_spacing", "train", str, "spacing of the recorded points in flow time (default "
              "linear; log for --engine flow)", RECORD_SPACINGS, sweepable=False),
    Parameter("norm", "train", str, "ablation: bn (batch normalisation, the paper) or none", NORMS),
    Parameter("stopgrad", "train", str, "ablation: stop-gradient on the target branch (on, the paper) or off",
              STOPGRADS),
    Parameter("target", "train", str, "ablation: online target (SimSiam, the paper) or ema (BYOL)", TARGETS),
    Parameter("tau", "train", float, "EMA rate of --target ema, in [0, 1)"),
)
"""Every field of ModelParams and TrainParams, once: ``cli/options.py`` builds its options
from this (and the sweep keys are to be generated from it)."""
