"""Run any engine: ``Simulation``, ``simulate`` and ``resume`` (docs/model.md sections 3-8).

The driver is engine-agnostic: it builds the run's constants, lets the engine from
``engines.ENGINES`` advance in chunks (so a progress callback can report and Ctrl-C
stops at a step boundary with a consistent partial result), checkpoints, and turns
the kernels' status code into a ``Run.status`` and a message that names the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ._version import __version__
from .core import _jit
from .engines import ENGINES, check_variant, step_inputs
from .events import EVENT_ARRAYS, new_events
from .objective import population_terms
from .params import MAX_ELEMENTS, MAX_STEPS, ModelParams, ParamError, TrainParams
from .results import Run
from .status import FAILURE_REASONS, STATUS_NAMES, VANISHED_MESSAGE, divergence_message

ProgressFn = Callable[[int, int, dict], None]


def check_memory(model: ModelParams, train: TrainParams) -> None:
    """Refuse, with a message naming the fix, a run whose arrays would not fit in memory."""
    m, L, cap = model.m, model.L, train.record
    if cap * (m * L + 2 * m * m + 2 * m + 2) > MAX_ELEMENTS:
        raise ParamError(f"record must be smaller: {cap} points of m={m} neurons would not fit in memory")
    if train.init != "reduced":  # W (m, d) and the features (d, L) are materialised
        model.check_materialised()
    ENGINES[train.engine].check_memory(model, train)


def config_dict(model: ModelParams, train: TrainParams) -> dict:
    """Every parameter, the seed and the package version (stored with each run)."""
    return {"model": model.to_dict(), "train": train.to_dict(), "version": __version__}


_EVENT_KEYS = (*EVENT_ARRAYS, "last")
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
        check_variant(train)
        self.inputs = step_inputs(model, train)
        self.V = self.inputs.V
        engine = ENGINES[train.engine]
        self.continuous = engine.continuous
        # a continuous-time engine's budget is in flow time (its solver steps are not bounded)
        self._budget = MAX_STEPS if engine.continuous else train.max_steps
        if _state is not None:
            self._restore(_state, engine)
        else:
            self.W0, self.engine_state = engine.start(model, train, self.inputs, W0, E0)
            self.E = _check_head(E0, m)
            self.rec = None
            if not engine.continuous:  # a continuous engine records into its own state
                self.rec = (np.zeros(cap, np.int64), np.zeros((cap, m, L)), np.zeros((cap, m)),
                            np.zeros((cap, m, m)), np.zeros(cap), np.zeros((cap, m)), np.zeros((cap, m, m)))
            self.rec_state = np.array([0, 0, 1], dtype=np.int64)
            if train.steps is not None:  # even spacing from the start
                self.rec_state[2] = max(1, -(-train.max_steps // (cap - 1)))
            self.code = _jit.STATUS_RUNNING
            self.elapsed = 0.0
            self.events, self.events_complete = new_events(m), True
        self.engine = engine(model, train, self.inputs, self.engine_state)
        if engine.continuous:
            self.code = self.engine.status if _state is None else self.code

    @property
    def step(self) -> int:
        return int(self.rec_state[0])

    @property
    def done(self) -> bool:
        return self.code != _jit.STATUS_RUNNING or self.step >= self._budget

    @property
    def flow_time(self) -> float:
        """The flow time reached (``eta * step`` for the discrete engines)."""
        return self.engine.time if self.continuous else self.step * self.train.eta

    def weights(self) -> np.ndarray:
        """Current ``W`` (m x d)."""
        return self.engine.weights()

    def advance(self, n: int) -> int:
        """Run at most ``n`` more steps (fewer if the run stops); return the status code."""
        if self.code != _jit.STATUS_RUNNING:
            return self.code
        n = int(min(n, self._budget - self.step))
        t0 = time.perf_counter()
        if n > 0:
            self.code = int(self.engine.advance(self.E, self.rec, self.rec_state, self.events, n))
        self._observe_budget_end()
        self.elapsed += time.perf_counter() - t0
        return self.code

    def _observe_budget_end(self) -> None:
        """The final state at the step budget is evaluated too (once), as the ensemble does."""
        at_budget = self.code == _jit.STATUS_RUNNING and self.step >= self._budget
        if self.continuous:
            return
        if at_budget and self.events[-1][0] != self.step:
            self.engine.observe_final(self.E, self.step, self.events)

    def run(self, *, progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
            checkpoint_every: int | None = None, on_checkpoint: Callable[[dict], None] | None = None) -> Run:
        """Advance until done; see :func:`simulate`."""
        max_steps = self._budget
        chunk = self.engine.first_chunk
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
                    progress(self.step, max_steps, self._progress_info())
        except KeyboardInterrupt:
            interrupted = True
        run = self.result(interrupted=interrupted)
        if progress is not None:
            progress(self.step, max_steps, self._progress_info() | {"done": True,
                                                                    "converged": run.status == "converged"})
        return run

    def _progress_info(self) -> dict:
        if self.continuous:
            return self.engine.progress_info()
        return _progress_info(self.rec, self.rec_state)

    def result(self, *, interrupted: bool = False) -> Run:
        """The :class:`Run` recorded so far (status ``interrupted`` if asked and not done)."""
        self._observe_budget_end()
        if self.continuous:
            return self._continuous_result(interrupted)
        train, step, code = self.train, self.step, self.code
        if interrupted and not self.done:
            status, message = "interrupted", f"interrupted at step {step}: partial result"
        elif code == _jit.STATUS_RUNNING:
            status = "max_steps"
            message = (f"stopped at the step budget ({train.max_steps} steps, "
                       f"flow time {train.max_steps * train.eta:g})")
        else:
            status = STATUS_NAMES[code]
            if status == "converged":
                message = f"converged at step {step} (flow time {step * train.eta:g})"
            elif status == "vanished":
                message = VANISHED_MESSAGE.format(step=step, tol=_jit.VANISH_TOL)
            else:
                message = divergence_message(code, train, step, options=self.engine.options)
        Wf = self.weights()
        W_target = self.engine.target_weights()
        n = int(self.rec_state[1])
        out = [a[:n].copy() for a in self.rec]
        if status != "diverged" and (n == 0 or out[0][-1] != step):
            out = _append_final(out, Wf, self.E, self.V, self.model, step, norm=train.norm, target=W_target)
        return Run(steps=out[0], alignment=out[1], norms=out[2], E=out[3], loss=out[4], rho=out[5],
                   gram=out[6], config=config_dict(self.model, self.train), status=status,
                   message=message, W0=self.W0, W=Wf, E_final=self.E.copy(), elapsed=self.elapsed,
                   events=self._events_record(), W_target=W_target)

    def _continuous_result(self, interrupted: bool) -> Run:
        """The :class:`Run` of a continuous-time engine: records at flow times, nominal steps."""
        train, code, eng = self.train, self.code, self.engine
        t_now = eng.time
        if interrupted and not self.done:
            status, message = "interrupted", f"interrupted at flow time {t_now:.6g}: partial result"
        else:
            status = STATUS_NAMES[code]
            message = _continuous_message(code, status, train, t_now, eng)
        t, A, gram, E, loss, rho = eng.records(include_final=status != "diverged")
        nrm = np.sqrt(np.maximum(np.einsum("tjj->tj", gram), 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            align = np.where(nrm[:, :, None] > 0, A / nrm[:, :, None], 0.0)
        thr, _, head_tol = self.inputs.event_params
        events = eng.events_record() | {"align_threshold": thr, "head_tol": head_tol}
        # nominal steps, clipped where t / eta leaves int64 (d ~ 1e9 runs reach t ~ 1e21)
        steps = np.minimum(np.rint(t / train.eta), float(2**62)).astype(np.int64)
        return Run(steps=steps, alignment=align, norms=nrm, E=E, loss=loss,
                   rho=rho, gram=gram, config=config_dict(self.model, train), status=status, message=message,
                   W0=self.W0, W=eng.weights(), E_final=eng.head(), elapsed=self.elapsed, events=events,
                   time=t, stats=eng.stats())

    def _events_record(self) -> dict | None:
        """The phase events for ``Run.events`` (``None`` if a checkpoint did not carry them)."""
        if not self.events_complete:
            return None
        ev = {k: v.copy() for k, v in zip(EVENT_ARRAYS, self.events, strict=False)}
        thr, _, head_tol = self.inputs.event_params
        return ev | {"last": int(self.events[-1][0]), "align_threshold": thr, "head_tol": head_tol}

    # ------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict:
        """The full state as a dict of arrays (plus JSON-able metadata under ``meta``)."""
        names = ("steps", "alignment", "norms", "E", "loss", "rho", "gram")
        state = {}
        if self.rec is not None:
            state.update({f"rec_{k}": v.copy() for k, v in zip(names, self.rec, strict=True)})
        state.update(rec_state=self.rec_state.copy(), E_now=self.E.copy())
        if self.W0 is not None:
            state["W0"] = self.W0.copy()
        state.update({k: v.copy() for k, v in self.engine_state.items()})
        if self.events_complete and not self.continuous:
            state.update({f"events_{k}": v.copy() for k, v in zip(_EVENT_KEYS, self.events, strict=True)})
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
        cfg = meta.get("config")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) \
                or not isinstance(cfg.get("train"), dict):
            raise ValueError("checkpoint has no readable configuration")
        written = cfg.get("version")
        if written != __version__:
            # a state written by other kernels may not mean the same thing here: refuse, never relabel
            raise ValueError(f"checkpoint written by theory-sim {written}, this is theory-sim "
                             f"{__version__}; resume it with theory-sim {written}, or start a new run")
        mdict = dict(cfg["model"])
        mdict["alpha"], mdict["pi"] = tuple(mdict["alpha"]), tuple(mdict["pi"])
        model, train = ModelParams(**mdict), TrainParams(**cfg["train"])
        return cls(model, train, _state=state)

    def _restore(self, state: dict, engine) -> None:
        model, train = self.model, self.train
        m, L, cap = model.m, model.L, train.record
        names = ("steps", "alignment", "norms", "E", "loss", "rho", "gram")
        shapes = ((cap,), (cap, m, L), (cap, m), (cap, m, m), (cap,), (cap, m), (cap, m, m))
        try:
            rec = []
            for name, shape in zip(names, shapes, strict=True):
                if engine.continuous:
                    break
                a = np.asarray(state[f"rec_{name}"])
                if a.shape != shape:
                    raise ValueError(f"rec_{name} has shape {a.shape}, expected {shape}")
                rec.append(_owned(a, np.int64 if name == "steps" else np.float64))
            self.rec = tuple(rec) if rec else None
            self.rec_state = _owned(state["rec_state"], np.int64)
            self.engine_state = {k: _owned(state[k], _dtype_of(state[k])) for k in
                                 (*engine.state_arrays, *engine.optional_arrays) if k in state}
            self.events = new_events(m)
            self.events_complete = engine.continuous or all(f"events_{k}" in state for k in _EVENT_KEYS)
            if self.events_complete and not engine.continuous:  # older checkpoints: the Run carries none
                fresh = self.events
                self.events = tuple(_owned(state[f"events_{k}"], a.dtype) for k, a in
                                    zip(_EVENT_KEYS, fresh, strict=True))
                if any(a.shape != b.shape for a, b in zip(self.events, fresh, strict=True)):
                    raise ValueError("checkpoint event arrays have inconsistent shapes")
            self.E = _owned(state["E_now"], np.float64)
            self.W0 = None if train.init == "reduced" else _owned(state["W0"], np.float64)
        except KeyError as exc:
            raise ValueError(f"checkpoint is missing {exc.args[0]}") from None
        w0_ok = self.W0 is None or self.W0.shape == (m, model.d)
        if self.rec_state.shape != (3,) or self.E.shape != (m, m) or not w0_ok:
            raise ValueError("checkpoint arrays have inconsistent shapes")
        self._check_restored(engine, cap)
        self._derive_missing_state(engine)
        self.code = int(state["meta"].get("code", _jit.STATUS_RUNNING))
        self.elapsed = float(state["meta"].get("elapsed", 0.0))


    def _check_restored(self, engine, cap: int) -> None:
        """Refuse a damaged checkpoint (wrong shapes, NaN, counters out of range) naming the array:
        the kernels index with the counters unchecked, and a NaN state would be reported as a
        divergence of the run instead of damage to its file."""
        step, n, stride = (int(x) for x in self.rec_state)
        recorded_ok = engine.continuous or 0 <= n <= cap  # a continuous engine records in its state
        if step < 0 or stride < 1 or not recorded_ok:
            raise ValueError(f"checkpoint counters out of range (step {step}, {n} recorded points, "
                             f"stride {stride})")
        # the arrays a fresh run of this configuration starts from: the same shapes, or damage
        _, fresh = engine.start(self.model, self.train, self.inputs, None, None)
        for k, a in self.engine_state.items():
            if k in fresh and a.shape != np.shape(fresh[k]):
                raise ValueError(f"checkpoint array {k} has shape {a.shape}, expected "
                                 f"{np.shape(fresh[k])}")
        floats = {"E_now": self.E, "W0": self.W0}
        if not engine.continuous:
            floats |= self.engine_state
            names = ("steps", "alignment", "norms", "E", "loss", "rho", "gram")
            floats |= {f"rec_{name}": a[:n] for name, a in zip(names, self.rec, strict=True)}
        for k, a in floats.items():
            if a is not None and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise ValueError(f"checkpoint array {k} holds NaN or infinite values (a damaged file)")

    def _derive_missing_state(self, engine) -> None:
        """A checkpoint from before the ablations (docs/model.md section 12) lacks the engine's
        ``derived_state`` arrays: rebuild them from ``W0`` (only the paper's model existed then)."""
        missing = [k for k in engine.state_arrays if k not in self.engine_state]
        if not missing:
            return
        if set(missing) - set(engine.derived_state) or self.train.target == "ema":
            raise ValueError(f"checkpoint is missing {missing[0]}")
        fresh = engine.init_state(self.W0, self.inputs)
        for k in missing:
            self.engine_state[k] = fresh[k] if k != "target" else self.engine_state["coords"].copy()


def _dtype_of(a):
    """Integer state arrays (the flow solver's counters) stay integer; the rest is float64."""
    return np.int64 if np.asarray(a).dtype.kind in "iu" else np.float64


def _check_head(E0, m: int) -> np.ndarray:
    """``E(0)``: the identity, or ``E0`` as an owned (m, m) float64 array."""
    if E0 is None:
        return np.eye(m)
    E = np.array(E0, dtype=np.float64, order="C", copy=True)
    if E.shape != (m, m):
        raise ParamError(f"E must have shape (m, m) = ({m}, {m}) (got {E.shape})")
    if not np.all(np.isfinite(E)):
        raise ParamError("W and E must be finite")
    return E


def _continuous_message(code: int, status: str, train: TrainParams, t: float, engine) -> str:
    """Why a continuous-time run stopped, in words (flow time; what to change on failure)."""
    rhs = engine.stats()["n_rhs"]
    if status == "converged":
        return f"converged at flow time {t:.6g} ({rhs} right-hand-side evaluations)"
    if status == "max_steps":
        if train.steps is not None:
            return f"reached flow time {t:.6g} (steps * eta = {train.steps} * {train.eta:g})"
        return (f"stopped at the flow-time cap {t:.6g} before converging (raise --max-flow-time; "
                f"{rhs} right-hand-side evaluations)")
    if status == "vanishing":
        return (f"stopped at flow time {t:.6g}: a follower shrinks steadily towards zero instead of "
                "learning a feature (vanishing follower, docs/model.md section 10)")
    if code == _jit.STATUS_STEP_UNDERFLOW:
        return (f"diverged at flow time {t:.6g}: {FAILURE_REASONS[code]}; loosen --rtol "
                f"(now {train.rtol:g}) or --atol")
    return f"diverged at flow time {t:.6g}: {FAILURE_REASONS.get(code, 'the solver failed')}"


def _owned(a, dtype) -> np.ndarray:
    """A C-contiguous copy: a restored run must not share memory with the caller's state."""
    return np.array(a, dtype=dtype, order="C", copy=True)


def simulate(model: ModelParams, train: TrainParams, *, W0=None, E0=None,
             progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
             checkpoint_every: int | None = None,
             on_checkpoint: Callable[[dict], None] | None = None) -> Run:
    """Train the model of docs/model.md section 3 and return the recorded :class:`Run`.

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


def _append_final(out, W, E, V, model, step, *, norm="bn", target=None):
    A = W @ V
    gram = W @ W.T
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        loss, rho = population_terms(W, E, model, norm=norm, target=target)
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
