"""Public wrappers around the numba kernels: validate, cast, allocate, call.

MODEL.md sections 1-8. ``simulate`` runs either engine in chunks (so a progress
callback can report and Ctrl-C stops at a step boundary with a consistent partial
result); the kernels report failure as a status code, turned here into a
``Run.status`` and a message that names the fix.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from ._version import __version__
from .core import _jit
from .core.moments import loss_grad, loss_rho
from .core.population import population_advance
from .core.sgd import sgd_advance
from .core.sgd import sgd_fast_gradient as _sgd_fast_kernel
from .core.sgd import sgd_gradient as _sgd_gradient_kernel
from .params import MAX_ELEMENTS, ModelParams, ParamError, TrainParams
from .results import Run

SGD_REDUCTION_CHUNKS = 8
"""Fixed number of partial sums in the SGD gradient: results do not depend on the thread count."""

ProgressFn = Callable[[int, int, dict], None]


# ---------------------------------------------------------------- data model

def feature_vectors(model: ModelParams) -> np.ndarray:
    """The features ``v_1..v_L`` as columns of a (d, L) matrix (MODEL.md section 1)."""
    d, L = model.d, model.L
    if model.features == "basis":
        return np.eye(d, L)
    rng = np.random.default_rng([model.feature_seed, 0x7EA7])
    q, r = np.linalg.qr(rng.standard_normal((d, L)))
    return q * np.sign(np.diag(r))  # Haar-distributed orthonormal columns


def initial_weights(model: ModelParams, seed: int) -> np.ndarray:
    """``W(0)_{ij} ~ N(0, 1/d)`` i.i.d. (MODEL.md section 4), from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((model.m, model.d)) / math.sqrt(model.d)


def split_moments(model: ModelParams) -> tuple[float, float, float]:
    """``(kx, k2, mu) = (E[n1 n2], E[n1^2], E[#noise patches in view 1])`` (section 6).

    ``n1, n2`` count the feature patches in view 1 and view 2. Bernoulli(1/2) split:
    ``n1 ~ Bin(k, 1/2)``. Exact half split: ``n1`` is hypergeometric (k marked among
    P, P/2 drawn) with variance ``k (P - k) / (4 (P - 1))``.
    """
    k, P = model.k, model.P
    mu = (P - k) / 2.0
    if model.split == "bernoulli":
        return k * (k - 1) / 4.0, k * (k + 1) / 4.0, mu
    var = k * (P - k) / (4.0 * (P - 1))
    return k * k / 4.0 - var, k * k / 4.0 + var, mu


def _model_tuple(model: ModelParams):
    lam = np.asarray(model.pi, dtype=np.float64) * np.asarray(model.alpha, dtype=np.float64) ** 6
    kx, k2, mu = split_moments(model)
    return (lam, float(kx), float(k2), float(mu), float(model.sigma) ** 2)


def head_mask(head: str, m: int) -> np.ndarray:
    """1 where an entry of ``E`` is trained: off-diagonal, none (frozen) or all (full)."""
    if head == "offdiag":
        return 1.0 - np.eye(m)
    if head == "frozen":
        return np.zeros((m, m))
    return np.ones((m, m))


def _check_weights(W, E, model: ModelParams):
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (model.m, model.d):
        raise ParamError(f"W must have shape (m, d) = ({model.m}, {model.d}) (got {W.shape})")
    if E is None:
        E = np.eye(model.m)
    E = np.asarray(E, dtype=np.float64)
    if E.shape != (model.m, model.m):
        raise ParamError(f"E must have shape (m, m) = ({model.m}, {model.m}) (got {E.shape})")
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(E))):
        raise ParamError("W and E must be finite")
    return np.ascontiguousarray(W), np.ascontiguousarray(E)


def _coords(W, model):
    V = feature_vectors(model)
    A = np.ascontiguousarray(W @ V)
    C = np.ascontiguousarray(model.sigma**2 * (W @ W.T))
    return V, A, C


# ---------------------------------------------------------------- population loss

def population_loss(W, E, params: ModelParams, *, target=None) -> float:
    """Closed-form population loss ``L = sum_j (2 - 2 rho_j)`` (MODEL.md section 6).

    ``target`` (default ``W``) are the weights of the stop-gradient branch; pass a
    frozen copy to differentiate the online branch alone.
    """
    return population_terms(W, E, params, target=target)[0]


def population_terms(W, E, params: ModelParams, *, target=None) -> tuple[float, np.ndarray]:
    """``(loss, rho)`` with ``rho_j = N_j / sqrt(DF_j DG_j)`` (MODEL.md section 6)."""
    W, E = _check_weights(W, E, params)
    Wt = W if target is None else _check_weights(target, None, params)[0]
    _, A, C = _coords(W, params)
    _, At, Ct = _coords(Wt, params)
    lam, kx, k2, mu, _ = _model_tuple(params)
    rho = np.empty(params.m)
    loss = loss_rho(A, C, E, At, Ct, lam, kx, k2, mu, rho)
    return float(loss), rho


def population_grad(W, E, params: ModelParams, *, target=None) -> tuple[np.ndarray, np.ndarray]:
    """Stop-gradient gradient ``(dL/dW, dL/dE)`` of :func:`population_loss` (section 7).

    ``dL/dW = gA V^T + sigma^2 (gC + gC^T) W``; ``dL/dE`` covers every entry
    (unmasked: the trainer masks what the head mode freezes).
    """
    W, E = _check_weights(W, E, params)
    Wt = W if target is None else _check_weights(target, None, params)[0]
    V, A, C = _coords(W, params)
    _, At, Ct = _coords(Wt, params)
    lam, kx, k2, mu, sigma2 = _model_tuple(params)
    m, L = A.shape
    gA, gC, gE, rho = np.empty((m, L)), np.empty((m, m)), np.empty((m, m)), np.empty(m)
    loss_grad(A, C, E, At, Ct, lam, kx, k2, mu, gA, gC, gE, rho)
    gW = gA @ V.T + sigma2 * (gC + gC.T) @ W
    return gW, gE


# ---------------------------------------------------------------- SGD gradient

def _sgd_data(model: ModelParams, keep_all_noise: bool = False):
    cdf = np.cumsum(np.asarray(model.pi, dtype=np.float64))
    cdf[-1] = 1.0
    return (np.asarray(model.alpha, dtype=np.float64), cdf, model.P, model.k,
            float(model.sigma), model.split == "half", keep_all_noise)


def _sgd_work(model: ModelParams, batch: int, fast: bool = False):
    N, P, m, d, L = batch, model.P, model.m, model.d, model.L
    T = SGD_REDUCTION_CHUNKS
    return (np.empty((N, P, m if fast else d)), np.empty((N, P, m)), np.empty((N, P), np.int8),
            np.empty((N, P), np.int8), np.empty(N, np.int64), np.empty(N),
            np.empty((N, m)), np.empty((N, m)), np.empty((N, P), np.int64),
            np.empty((T, m, d)), np.empty((T, m, L)))


def sgd_gradient(W, E, params: ModelParams, *, batch: int = 256, seed: int = 0, step: int = 0,
                 return_batch: bool = False, fast: bool = False):
    """One mini-batch gradient ``(dL/dW, dL/dE, batch loss)`` of the ``sgd`` engine.

    The batch is the one the engine would draw at ``step`` of a run with ``seed``
    (MODEL.md sections 3 and 8). Averaged over many batches it approaches
    :func:`population_grad` as the batch grows. With ``return_batch=True`` a fourth
    item holds the materialised batch: ``X`` (N, P, d) patches and ``view1``
    (N, P) booleans (True: the patch is in view 1), for independent re-computation.
    ``fast=True`` uses the ``sgd-fast`` engine's exact-in-distribution draw instead
    (a different sample of the same law; no materialised batch to return).
    """
    W, E = _check_weights(W, E, params)
    batch = TrainParams(batch=batch).batch
    seed = TrainParams(seed=seed).seed
    V = np.ascontiguousarray(feature_vectors(params))
    gW, gE = np.empty_like(W), np.empty_like(E)
    if fast:
        if return_batch:
            raise ValueError("return_batch=True needs the materialised engine (fast=False)")
        work = _sgd_work(params, batch, fast=True)
        loss = _sgd_fast_kernel(W, E, V, _sgd_data(params), seed, int(step), gW, gE, work)
        return gW, gE, float(loss)
    work = _sgd_work(params, batch)
    loss = _sgd_gradient_kernel(W, E, V, _sgd_data(params, return_batch), seed, int(step), gW, gE, work)
    if not return_batch:
        return gW, gE, float(loss)
    noise, _, feat, view, label, sign = work[:6]
    alpha = np.asarray(params.alpha)
    signal = (sign * alpha[label])[:, None, None] * V.T[label][:, None, :]
    X = np.where(feat[:, :, None] == 1, signal, noise)
    return gW, gE, float(loss), {"X": X, "view1": view == 1, "label": label.copy(),
                                 "sign": sign.copy()}


# ---------------------------------------------------------------- simulate

STATUS_MESSAGES = {
    _jit.STATUS_CONVERGED: "converged",
    _jit.STATUS_MAX_STEPS: "max_steps",
    _jit.STATUS_NONFINITE: "diverged",
    _jit.STATUS_RUNAWAY: "diverged",
    _jit.STATUS_DEGENERATE: "diverged",
}


def _divergence_message(code, train: TrainParams, step: int) -> str:
    what = {
        _jit.STATUS_NONFINITE: "the loss or gradient became NaN or infinite",
        _jit.STATUS_RUNAWAY: f"a neuron's norm exceeded max_norm={train.max_norm:g}",
        _jit.STATUS_DEGENERATE: "a neuron's weights became exactly zero",
    }[code]
    fix = f"lower --eta (now {train.eta:g})"
    if train.head != "frozen" and train.eta_E > 0:
        fix += f" or --eta-E (now {train.eta_E:g})"
    if train.engine != "population":
        fix += f", or raise --batch (now {train.batch})"
    return f"diverged at step {step}: {what}; {fix}"


def check_memory(model: ModelParams, train: TrainParams) -> None:
    """Refuse, with a message naming the fix, a run whose arrays would not fit in memory."""
    m, L, cap = model.m, model.L, train.record
    if cap * (m * L + 2 * m * m + 2 * m + 2) > MAX_ELEMENTS:
        raise ParamError(f"record must be smaller: {cap} points of m={m} neurons would not fit in memory")
    if train.engine == "sgd" and train.batch * model.P * model.d > MAX_ELEMENTS:
        raise ParamError(f"the sgd engine materialises batch*P*d = {train.batch * model.P * model.d:.3g} "
                         f"floats (more than {MAX_ELEMENTS:.0e}); use --engine sgd-fast (same law) "
                         "or a smaller --batch, --P or --d")
    if train.engine == "sgd-fast" and train.batch * model.P * model.m > MAX_ELEMENTS:
        raise ParamError(f"batch*P*m = {train.batch * model.P * model.m:.3g} is too large; "
                         "lower --batch or --P")


def config_dict(model: ModelParams, train: TrainParams) -> dict:
    """Every parameter, the seed and the package version (stored with each run)."""
    return {"model": model.to_dict(), "train": train.to_dict(), "version": __version__}


CHECKPOINT_FORMAT = "theory-sim-checkpoint"
CHECKPOINT_VERSION = 1


class Simulation:
    """A run in progress. Its whole state lives in arrays, so it can be checkpointed
    (:meth:`checkpoint`) and resumed (:meth:`from_checkpoint`) bit-identically: the
    SGD engines' random numbers are counter-based (seed, step, sample), so the step
    counter is the generator state.
    """

    def __init__(self, model: ModelParams, train: TrainParams, *, W0=None, E0=None, _state=None):
        if not isinstance(model, ModelParams) or not isinstance(train, TrainParams):
            raise TypeError("Simulation(model, train) takes a ModelParams and a TrainParams")
        self.model, self.train = model, train
        m, L, cap = model.m, model.L, train.record
        check_memory(model, train)
        self.V = np.ascontiguousarray(feature_vectors(model))
        self._mask = head_mask(train.head, m)
        self._model_t = _model_tuple(model)
        self._rates = (train.eta, train.eta_E)
        tol = train.tol if train.steps is None else -1.0  # a fixed budget: no early stop
        self._stop = (tol, train.align_threshold, train.max_norm, train.check_interval)
        if _state is not None:
            self._restore(_state)
        else:
            W0 = initial_weights(model, train.seed) if W0 is None else W0
            self.W0, E = _check_weights(W0, E0, model)
            self.E = E.copy()
            self.rec = (np.zeros(cap, np.int64), np.zeros((cap, m, L)), np.zeros((cap, m)),
                        np.zeros((cap, m, m)), np.zeros(cap), np.zeros((cap, m)), np.zeros((cap, m, m)))
            self.rec_state = np.array([0, 0, 1], dtype=np.int64)
            if train.steps is not None:  # even spacing from the start
                self.rec_state[2] = max(1, -(-train.max_steps // (cap - 1)))
            self.code = _jit.STATUS_RUNNING
            self.elapsed = 0.0
            if train.engine == "population":
                Q, _ = np.linalg.qr(np.concatenate([self.V, self.W0.T], axis=1))
                self.basis = np.ascontiguousarray(Q)
                self.coords = np.ascontiguousarray(self.W0 @ Q)
            else:
                self.basis = None
                self.coords = self.W0.copy()
        if train.engine == "population":
            self._Vr = np.ascontiguousarray(self.basis.T @ self.V)
        else:
            self._data = _sgd_data(model)
            self._fast = train.engine == "sgd-fast"
            self._work = _sgd_work(model, train.batch, self._fast)
            self._gW, self._gE = np.empty_like(self.coords), np.empty_like(self.E)

    @property
    def step(self) -> int:
        return int(self.rec_state[0])

    @property
    def done(self) -> bool:
        return self.code != _jit.STATUS_RUNNING or self.step >= self.train.max_steps

    def weights(self) -> np.ndarray:
        """Current ``W`` (m x d)."""
        if self.basis is not None:
            return self.coords @ self.basis.T
        return self.coords.copy()

    def advance(self, n: int) -> int:
        """Run at most ``n`` more steps (fewer if the run stops); return the status code."""
        if self.code != _jit.STATUS_RUNNING:
            return self.code
        n = int(min(n, self.train.max_steps - self.step))
        if n <= 0:
            return self.code
        t0 = time.perf_counter()
        if self.basis is not None:
            code = population_advance(self.coords, self.E, self._Vr, self._mask, self._model_t,
                                      self._rates, self._stop, self.rec, self.rec_state, n)
        else:
            code = sgd_advance(self.coords, self.E, self.V, self._mask, self._data, self._model_t,
                               self._rates, self._stop, self.rec, self.rec_state, n, self.train.seed,
                               self._gW, self._gE, self._work, self._fast)
        self.elapsed += time.perf_counter() - t0
        self.code = int(code)
        return self.code

    def run(self, *, progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
            checkpoint_every: int | None = None, on_checkpoint: Callable[[dict], None] | None = None) -> Run:
        """Advance until done; see :func:`simulate`."""
        max_steps = self.train.max_steps
        chunk = 4096 if self.basis is not None else 16
        interrupted = False
        next_ckpt = None
        if checkpoint_every:
            next_ckpt = (self.step // checkpoint_every + 1) * checkpoint_every
        try:
            while not self.done:
                if should_stop is not None and should_stop():
                    interrupted = True
                    break
                n = chunk if next_ckpt is None else min(chunk, next_ckpt - self.step)
                t0 = time.perf_counter()
                self.advance(n)
                dt = time.perf_counter() - t0
                # aim at ~0.25 s per kernel call: responsive progress and Ctrl-C
                chunk = int(min(max(chunk * 0.25 / max(dt, 1e-6), 16), chunk * 8, 10**8))
                if next_ckpt is not None and self.step >= next_ckpt and not self.done:
                    on_checkpoint(self.checkpoint())
                    next_ckpt += checkpoint_every
                if progress is not None:
                    progress(self.step, max_steps, _progress_info(self.rec, self.rec_state))
        except KeyboardInterrupt:
            interrupted = True
        run = self.result(interrupted=interrupted)
        if progress is not None:
            progress(self.step, max_steps, _progress_info(self.rec, self.rec_state) | {"done": True})
        return run

    def result(self, *, interrupted: bool = False) -> Run:
        """The :class:`Run` recorded so far (status ``interrupted`` if asked and not done)."""
        train, step, code = self.train, self.step, self.code
        if interrupted and not self.done:
            status, message = "interrupted", f"interrupted at step {step}: partial result"
        elif code == _jit.STATUS_RUNNING:
            status = "max_steps"
            message = (f"stopped at the step budget ({train.max_steps} steps, "
                       f"flow time {train.max_steps * train.eta:g})")
        else:
            status = STATUS_MESSAGES[code]
            if status == "converged":
                message = f"converged at step {step} (flow time {step * train.eta:g})"
            else:
                message = _divergence_message(code, train, step)
        Wf = self.weights()
        n = int(self.rec_state[1])
        out = [a[:n].copy() for a in self.rec]
        if status != "diverged" and (n == 0 or out[0][-1] != step):
            out = _append_final(out, Wf, self.E, self.V, self.model, step)
        return Run(steps=out[0], alignment=out[1], norms=out[2], E=out[3], loss=out[4], rho=out[5],
                   gram=out[6], config=config_dict(self.model, self.train), status=status,
                   message=message, W0=self.W0, W=Wf, E_final=self.E.copy(), elapsed=self.elapsed)

    # ------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict:
        """The full state as a dict of arrays (plus JSON-able metadata under ``meta``)."""
        names = ("steps", "alignment", "norms", "E", "loss", "rho", "gram")
        state = {f"rec_{k}": v.copy() for k, v in zip(names, self.rec, strict=True)}
        state.update(rec_state=self.rec_state.copy(), coords=self.coords.copy(), E_now=self.E.copy(),
                     W0=self.W0.copy())
        if self.basis is not None:
            state["basis"] = self.basis.copy()
        state["meta"] = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
                         "config": config_dict(self.model, self.train), "code": self.code,
                         "elapsed": self.elapsed}
        return state

    @classmethod
    def from_checkpoint(cls, state: dict) -> Simulation:
        """Rebuild a run from :meth:`checkpoint`'s output; raises ``ValueError`` if it is not one."""
        meta = state.get("meta")
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a theory-sim checkpoint")
        if meta.get("format_version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint format version {meta.get('format_version')!r}; this theory-sim "
                             f"reads version {CHECKPOINT_VERSION}")
        cfg = meta["config"]
        mdict = dict(cfg["model"])
        mdict["alpha"], mdict["pi"] = tuple(mdict["alpha"]), tuple(mdict["pi"])
        model, train = ModelParams(**mdict), TrainParams(**cfg["train"])
        return cls(model, train, _state=state)

    def _restore(self, state: dict) -> None:
        model, train = self.model, self.train
        m, L, cap = model.m, model.L, train.record
        names = ("steps", "alignment", "norms", "E", "loss", "rho", "gram")
        shapes = ((cap,), (cap, m, L), (cap, m), (cap, m, m), (cap,), (cap, m), (cap, m, m))
        try:
            rec = []
            for name, shape in zip(names, shapes, strict=True):
                a = np.asarray(state[f"rec_{name}"])
                if a.shape != shape:
                    raise ValueError(f"rec_{name} has shape {a.shape}, expected {shape}")
                rec.append(_owned(a, np.int64 if name == "steps" else np.float64))
            self.rec = tuple(rec)
            self.rec_state = _owned(state["rec_state"], np.int64)
            self.coords = _owned(state["coords"], np.float64)
            self.E = _owned(state["E_now"], np.float64)
            self.W0 = _owned(state["W0"], np.float64)
            self.basis = None
            if train.engine == "population":
                self.basis = _owned(state["basis"], np.float64)
        except KeyError as exc:
            raise ValueError(f"checkpoint is missing {exc.args[0]}") from None
        if self.rec_state.shape != (3,) or self.E.shape != (m, m) or self.W0.shape != (m, model.d):
            raise ValueError("checkpoint arrays have inconsistent shapes")
        self.code = int(state["meta"].get("code", _jit.STATUS_RUNNING))
        self.elapsed = float(state["meta"].get("elapsed", 0.0))


def _owned(a, dtype) -> np.ndarray:
    """A C-contiguous copy: a restored run must not share memory with the caller's state."""
    return np.array(a, dtype=dtype, order="C", copy=True)


def simulate(model: ModelParams, train: TrainParams, *, W0=None, E0=None,
             progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
             checkpoint_every: int | None = None,
             on_checkpoint: Callable[[dict], None] | None = None) -> Run:
    """Train the model of MODEL.md section 3 and return the recorded :class:`Run`.

    ``W0`` (m x d) overrides the seeded ``N(0, 1/d)`` initialisation and ``E0`` the
    identity head. ``progress(step, max_steps, info)`` is called between chunks of
    work (a few times a second). Ctrl-C, or ``should_stop()`` turning true, stops at a
    step boundary and returns the partial run with status ``interrupted``. With
    ``checkpoint_every=N``, ``on_checkpoint(state)`` receives the full state every
    ``N`` steps (:meth:`Simulation.from_checkpoint` resumes it exactly).
    """
    sim = Simulation(model, train, W0=W0, E0=E0)
    return sim.run(progress=progress, should_stop=should_stop, checkpoint_every=checkpoint_every,
                   on_checkpoint=on_checkpoint)


def resume(state: dict, **run_options) -> Run:
    """Continue a checkpointed run to the end (same options as :func:`simulate`)."""
    return Simulation.from_checkpoint(state).run(**run_options)


def _append_final(out, W, E, V, model, step):
    A = W @ V
    gram = W @ W.T
    loss, rho = population_terms(W, E, model)
    nrm = np.sqrt(np.diag(gram))
    with np.errstate(invalid="ignore", divide="ignore"):
        align = np.where(nrm[:, None] > 0, A / nrm[:, None], 0.0)
    point = (step, align, nrm, E, loss, rho, gram)
    return [np.concatenate([a, np.asarray(p, dtype=a.dtype)[None]]) for a, p in zip(out, point, strict=True)]


def _progress_info(rec, rec_state) -> dict:
    n = int(rec_state[1])
    if n == 0:
        return {}
    align = rec[1][n - 1]
    return {"loss": float(rec[4][n - 1]), "alignment": np.abs(align).copy(),
            "E": rec[3][n - 1].copy()}
