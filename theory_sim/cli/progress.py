"""Progress on stderr, hand-written (no dependency).

``ProgressBar`` is a plain fraction bar (sweeps and figures count finished units).
``RunProgress`` is the bar of ``theory-sim run``: a run has no known length (it stops
when it converges, usually long before the flow-time cap), so the bar measures the
distance to convergence through the phases of docs/model.md section 5, read off the
alignment: I (some neuron learns a feature), II-III (the others escape), IV (the head
returns to I). It also announces the first compile of the kernels and keeps the
compile out of its clock.

Why not tqdm or rich: both are built around a known total and a rate (an ETA), which
a run does not have; the phase logic above would be the same custom code inside
either, and the rest (redraw in place on a terminal, a few lines in a log) is 40 lines
here against a new dependency for every user.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np


class ProgressBar:
    """``bar(done, total, text)``: redraws in place on a terminal, prints a few lines otherwise."""

    def __init__(self, label: str, *, stream=None, enabled: bool = True, width: int = 28):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._last_decile = -1

    def restart_clock(self) -> None:
        """Count elapsed time from now (e.g. once the kernels are compiled)."""
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int, text: str = "", final: bool = False):
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        self.draw(frac, f"{100 * frac:5.1f}%", text, final=final)

    def draw(self, frac: float, head: str, text: str = "", *, final: bool = False, force: bool = False):
        """Draw ``frac`` of the bar with ``head`` after it; ``force`` prints a line even off a terminal."""
        if not self.enabled:
            return
        fill = int(round(min(max(frac, 0.0), 1.0) * self.width))
        bar = "#" * fill + "." * (self.width - fill)
        line = f"{self.label} [{bar}] {head} {time.perf_counter() - self.t0:6.1f}s {text}".rstrip()
        try:
            if self.tty:
                self.stream.write("\r" + line[:160].ljust(80))
                if final:
                    self.stream.write("\n")
            else:
                decile = int(frac * 10)
                if decile > self._last_decile or final or force:
                    self._last_decile = max(decile, self._last_decile)
                    self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError, AttributeError):  # stderr closed or full: the run goes on
            self.enabled = False


TICK_SECONDS = 30.0
"""While the kernels compile, a line this often says the command is alive."""
LOADED_FACTOR = 3.0
"""The first compile's wall time under a load of 4 on 2 cores against idle (flow: 134 s / 45 s)."""

PHASES = ("I", "II-III", "IV", "done", "collapsed")
COLLAPSED = 4


def run_phase(alignment: np.ndarray, E: np.ndarray | None, threshold: float) -> tuple[int, str]:
    """``(index into PHASES, who)`` from the current ``|c_jl|`` (m x L) and head ``E``.

    0: no neuron holds a feature yet; 1: some but not all neurons do (the others escape);
    2: every neuron holds a different feature and the head relaxes towards I (phase IV);
    4 (:data:`COLLAPSED`): every neuron holds one, but not all different ones (dimensional
    collapse, e.g. ``--head frozen``: no phase IV to claim).
    """
    best = alignment.max(axis=1)
    learned = best >= threshold
    if not learned.any():
        return 0, f"max|c| {best.max():.2g}"
    if not learned.all():
        waiting = best[~learned].max()
        return 1, f"{int(learned.sum())}/{len(learned)} neurons learned, next max|c| {waiting:.2g}"
    held = alignment.argmax(axis=1)
    if len(set(held.tolist())) < min(alignment.shape):
        features = ", ".join(f"v{f + 1}" for f in sorted(set(held.tolist())))
        return COLLAPSED, f"every neuron holds {features}"
    dist = 0.0 if E is None else float(np.linalg.norm(E - np.eye(E.shape[0])))
    return 2, f"|E - I| {dist:.2g}"


def _log_progress(now: float, start: float, goal: float) -> float:
    """Fraction of the way from ``start`` to ``goal`` on a log scale (0 if no way to go)."""
    if not (now > 0 and start > 0 and goal > 0) or math.isclose(start, goal) or start >= goal:
        return 1.0 if now >= goal else 0.0
    return min(1.0, max(0.0, math.log(now / start) / math.log(goal / start)))


class RunProgress:
    """The bar of ``theory-sim run``: ``progress(step, max_steps, info)`` as the Simulation calls it.

    ``compiling=True`` prints one line at the start (the kernels are being compiled and
    Ctrl-C acts when that ends) and one with the compile's duration at the first report;
    the bar's clock starts there. ``info`` carries ``alignment`` (|c|, m x L), ``E`` and
    ``loss`` (and, if the Simulation passes it, ``speed``: the convergence measure,
    compared against ``tol``).
    """

    HEAD_GOAL = 0.01  # |E - I|_F that ends phase IV (T4, docs/model.md section 9)

    def __init__(self, *, engine: str, eta: float, max_steps: int, threshold: float, tol: float,
                 compiling: bool, compile_seconds: float | None = None, enabled: bool = True,
                 stream=None, label: str = "run"):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.bar = ProgressBar(label, stream=self.stream, enabled=enabled)
        self.eta, self.max_steps, self.threshold, self.tol = eta, max_steps, threshold, tol
        self.compiling = compiling
        self.t_start = time.perf_counter()
        self.compile_time = None
        self.fill = 0.0
        self.phase = -1
        self._last_step = None
        self._start = {}
        self._ticker = None
        if compiling and enabled:
            about = (f" (~{compile_seconds:.0f} s on an idle machine, up to {LOADED_FACTOR:g}x that "
                     f"under load)" if compile_seconds else "")
            self._say(f"compiling the {engine} kernels, once per version{about}; "
                      f"Ctrl-C takes effect when compiling ends")
            self._start_ticker(engine)

    def _start_ticker(self, engine: str) -> None:
        """A line every :data:`TICK_SECONDS` while the compile lasts: a long one shows it is alive."""
        import threading

        done = threading.Event()

        def tick():
            while not done.wait(TICK_SECONDS):
                self._say(f"still compiling the {engine} kernels "
                          f"({time.perf_counter() - self.t_start:.0f} s so far)")

        self._ticker = done
        threading.Thread(target=tick, name="theory-sim-compile-ticker", daemon=True).start()

    def close(self) -> None:
        """Stop the compile ticker (idempotent; the first report stops it too)."""
        if self._ticker is not None:
            self._ticker.set()
            self._ticker = None

    def _say(self, text: str) -> None:
        try:
            self.stream.write(f"theory-sim: {text}\n")
            self.stream.flush()
        except (OSError, ValueError, AttributeError):  # stderr closed or full: the run goes on
            self.enabled = self.bar.enabled = False

    def _fraction(self, phase: int, info: dict) -> float:
        best = np.asarray(info["alignment"]).max(axis=1)
        if phase == 0:
            start = self._start.setdefault(0, float(best.max()))
            return 0.25 * _log_progress(float(best.max()), start, self.threshold)
        if phase == 1:
            pending = float(best[best < self.threshold].max())
            start = self._start.setdefault(1, pending)
            return 0.25 + 0.5 * _log_progress(pending, start, self.threshold)
        E = info.get("E")  # phase IV or a collapse: the head settling is what remains
        dist = float(np.linalg.norm(E - np.eye(E.shape[0]))) if E is not None else 0.0
        start = self._start.setdefault(2, max(dist, self.HEAD_GOAL))
        # distance shrinking from start to HEAD_GOAL, on a log scale
        return 0.75 + 0.25 * _log_progress(1.0 / max(dist, 1e-300), 1.0 / start, 1.0 / self.HEAD_GOAL)

    def __call__(self, step: int, total: int, info: dict) -> None:
        if not self.enabled:
            return
        if self.compile_time is None:
            self.close()
            self.compile_time = time.perf_counter() - self.t_start
            if self.compiling:
                self._say(f"compiled in {self.compile_time:.1f} s")
            self.bar.restart_clock()
        done = bool(info.get("done"))
        repeat = done and step == self._last_step
        self._last_step = step
        self.max_steps = total
        flow = info.get("flow_time", step * self.eta)  # a continuous engine reports its flow time
        cap = info.get("cap", total * self.eta)
        # a continuous engine counts its adaptive solver steps; the summary's steps are nominal
        counted = "solver steps" if "flow_time" in info else "step"
        parts = [f"{counted} {step:.3g}", f"t {flow:.4g} (cap {cap:.3g})"]
        force = False
        if "alignment" in info:
            phase, who = run_phase(np.asarray(info["alignment"]), info.get("E"), self.threshold)
            force = phase != self.phase
            self.phase = phase
            self.fill = max(self.fill, self._fraction(phase, info))
            name = PHASES[phase] if phase == COLLAPSED else f"phase {PHASES[phase]}"
            parts.insert(0, f"{name} ({who})")
        if "loss" in info:
            parts.append(f"loss {info['loss']:.6g}")
        if "speed" in info:
            parts.append(f"speed {info['speed']:.2g} (tol {self.tol:g})")
        if done and info.get("converged"):
            if repeat and self.fill == 1.0 and not self.bar.tty:
                return  # the closing call repeats the last report: one line is enough in a log
            self.fill = 1.0
        elif repeat and not self.bar.tty:
            return
        head = f"{100 * self.fill:5.1f}%"
        self.bar.draw(self.fill, head, ", ".join(parts), final=done, force=force)
