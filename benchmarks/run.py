#!/usr/bin/env python
"""Per-step time of theory-sim against the tools a researcher would otherwise write.

Contenders (all float64, CPU, measured in one process, in the same run):

* theory-sim population engine (numba, reduced coordinates) at d = 512 and 65536,
  timed by calling ``theory_sim.core.population.population_advance`` on arrays
  prepared exactly as ``theory_sim.simulate`` prepares them;
* theory-sim SGD engine (numba, materialised patches) at d = 512, batch 256, P = 16,
  timed through the public ``simulate(..., engine="sgd")`` less its fixed cost (and
  the ``sgd-fast`` engine of docs/model.md section 8 the same way, where it exists);
* JAX-jit and PyTorch-eager population steps (``benchmarks/peers``) at d = 512, 65536;
* JAX-jit and PyTorch-eager SGD steps at d = 512, batch 256, P = 16.

Every contender gets a first (warm-up) call, which is reported separately (it holds
JAX's compile time), then a calibration, then several timed repeats of ``n`` steps
from the same starting point; the table shows the median per-step time, the spread
(min-max over repeats) and the ratio peer / theory-sim for the same workload.

Also measured, each in a fresh subprocess: the first-call (compile) time of the
theory-sim kernels with ``NUMBA_CACHE_DIR`` pointed at an empty directory (and the
same again with that now warm cache), and the peak memory (``ru_maxrss``) of
``theory-sim run --d 512 --eta 1e-3 --quiet``.

A contender whose package is missing is reported as skipped; one that fails is
reported with its error; neither stops the others. Timings on a shared machine are
only as good as its idleness: the load average before and after is reported, and a
warning printed when it is high.

    python benchmarks/run.py --quick            # under a minute: population compile only,
                                                # main run capped at 2e5 steps
    python benchmarks/run.py --json perf.json   # the full run (a few minutes)
    python benchmarks/run.py --threads 1 --clock cpu   # one thread each, CPU time: on a busy machine

Peers come from the optional packages ``torch`` (2.13.0, CPU build) and ``jax``/``jaxlib``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for ``benchmarks.peers`` when run as a script

import numpy as np  # noqa: E402

import theory_sim as ts  # noqa: E402
from theory_sim.events import new_events  # noqa: E402
from theory_sim.params import ENGINES  # noqa: E402

ETA = 1e-3
SGD_BATCH = 256
SGD_D = 512
POP_DIMS = (512, 65536)
SEED = 1


class Skipped(Exception):
    """A contender that cannot run here (its package is not installed)."""


# ---------------------------------------------------------------- theory-sim runners

class TheorySimPopulation:
    """``population_advance`` on arrays prepared as ``theory_sim.simulate`` prepares them."""

    def __init__(self, model, W0, *, eta=ETA, head="offdiag"):
        from theory_sim.core.population import population_advance
        from theory_sim.engines import step_inputs
        from theory_sim.model import reduced_coordinates

        # a fixed step budget: no early stop (tol < 0), as simulate(steps=...) does
        train = ts.TrainParams(eta=eta, head=head, steps=1, record=2)
        self._advance = population_advance
        inputs = step_inputs(model, train)
        self.Q, self.B0, self.Vr = reduced_coordinates(inputs.V, W0)
        self.mask, self.model_t = inputs.E_mask, inputs.model
        self.rates, self.stop, self.event_params = inputs.rates, inputs.stop, inputs.event_params
        m, L, cap = model.m, model.L, 2
        self.rec = (np.zeros(cap, np.int64), np.zeros((cap, m, L)), np.zeros((cap, m)),
                    np.zeros((cap, m, m)), np.zeros(cap), np.zeros((cap, m)), np.zeros((cap, m, m)))
        self.rec_state = np.zeros(3, dtype=np.int64)
        self.B = self.B0.copy()
        self.E = np.eye(model.m)
        self.reset()

    def reset(self):
        self.B[:] = self.B0
        self.E[:] = np.eye(self.E.shape[0])
        self.rec_state[:] = (0, 0, 1 << 62)  # record only step 0
        self.events = new_events(self.E.shape[0])  # the phase events, tracked at every step

    def run(self, n):
        code = self._advance(self.B, self.E, self.Vr, self.mask, self.model_t, self.rates, self.stop,
                             self.rec, self.rec_state, int(n), self.events, self.event_params)
        if code != 0:
            raise RuntimeError(f"population_advance returned status {code}")

    def state(self):
        return self.B @ self.Q.T, self.E.copy()


class TheorySimSimulate:
    """The public ``simulate()`` (any engine): ``n`` steps cost ``T(n) - T(1)`` over ``n - 1`` steps.

    ``T(1)`` (median of five calls) holds the wrapper's fixed cost: parameter checks,
    allocation, the final summary point. Used for the SGD engines, whose per-step time
    dwarfs that cost, and as a cross-check of the kernel-level population timing.
    """

    def __init__(self, model, W0, *, engine="population", batch=SGD_BATCH, eta=ETA, seed=SEED):
        self.model, self.W0 = model, W0
        self.kw = {"eta": eta, "engine": engine, "batch": batch, "seed": seed, "record": 2}
        self.t1 = None
        self.last = None

    def reset(self):
        pass

    def _call(self, n):
        t0, c0 = time.perf_counter(), time.process_time()
        run = ts.simulate(self.model, ts.TrainParams(steps=int(n), **self.kw), W0=self.W0)
        dt = np.array([time.perf_counter() - t0, time.process_time() - c0])
        if run.status != "max_steps":
            raise RuntimeError(f"simulate ended with status {run.status}: {run.message}")
        self.last = run
        return dt

    def run(self, n):
        if self.t1 is None:
            self._call(1)
            self.t1 = np.median([self._call(1) for _ in range(5)], axis=0)
        dt = self._call(n)
        # read by _timed: (wall, cpu) seconds of n steps less the fixed cost
        self.run_seconds = (dt - self.t1) * n / (n - 1) if n > 1 else dt

    def state(self):
        return self.last.W, self.last.E_final


# ---------------------------------------------------------------- contenders

def _peer(name):
    try:
        if name == "torch":
            from benchmarks.peers import torch_peer as mod
        else:
            from benchmarks.peers import jax_peer as mod
    except ImportError as exc:  # the extra is not installed
        raise Skipped(f"{name} not installed ({exc})") from None
    return mod


def contenders():
    """``(key, label, kind, d, factory)`` for every contender, in display order."""
    out = []
    for d in POP_DIMS:
        out.append((f"ts-pop-{d}", "theory-sim population (numba)", "population", d,
                    lambda model, W0: TheorySimPopulation(model, W0)))
        out.append((f"jax-pop-{d}", "JAX jit population (fori_loop)", "population", d,
                    lambda model, W0: _peer("jax").PopulationRunner(model, W0, eta=ETA)))
        out.append((f"torch-pop-{d}", "PyTorch eager population", "population", d,
                    lambda model, W0: _peer("torch").PopulationRunner(model, W0, eta=ETA)))
    out.append((f"ts-sim-pop-{POP_DIMS[0]}", "theory-sim simulate(), population", "population",
                POP_DIMS[0], lambda model, W0: TheorySimSimulate(model, W0)))
    d = SGD_D
    out.append((f"ts-sgd-{d}", "theory-sim SGD (numba)", "sgd", d,
                lambda model, W0: TheorySimSimulate(model, W0, engine="sgd")))
    if "sgd-fast" in ENGINES:
        out.append((f"ts-sgdfast-{d}", "theory-sim sgd-fast (section 8)", "sgd", d,
                    lambda model, W0: TheorySimSimulate(model, W0, engine="sgd-fast")))
    out.append((f"jax-sgd-{d}", "JAX jit SGD step", "sgd", d,
                lambda model, W0: _peer("jax").SGDRunner(model, W0, batch=SGD_BATCH, eta=ETA, seed=SEED)))
    out.append((f"torch-sgd-{d}", "PyTorch eager SGD step", "sgd", d,
                lambda model, W0: _peer("torch").SGDRunner(model, W0, batch=SGD_BATCH, eta=ETA, seed=SEED)))
    return out


def _timed(runner, n):
    """``(wall, cpu)`` seconds for ``n`` steps from the reset point.

    CPU time is this process's, all threads together. The simulate wrapper reports
    its own times, less its fixed cost.
    """
    runner.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    runner.run(n)
    dt = (time.perf_counter() - t0, time.process_time() - c0)
    if hasattr(runner, "run_seconds"):
        return tuple(float(x) for x in runner.run_seconds)
    return dt


def measure(runner, *, target, repeats, max_steps, clock):
    """First call, calibration, then ``repeats`` timed runs of ``n`` steps each.

    ``clock`` (0 wall, 1 CPU) is what the median, spread and ratios use; both are kept.
    """
    runner.reset()
    t0 = time.perf_counter()
    runner.run(1)
    first = time.perf_counter() - t0
    _timed(runner, 1)  # warm-up after the first call
    n, dt = 1, _timed(runner, 1)[0]
    while dt < target / 8 and n < max_steps:
        n = min(n * 8, max_steps)
        dt = _timed(runner, n)[0]
    n = int(min(max(1, math.ceil(n * target / max(dt, 1e-9))), max_steps))
    both = [_timed(runner, n) for _ in range(repeats)]
    wall = [w / n for w, _ in both]
    cpu = [c / n for _, c in both]
    times = (wall, cpu)[clock]
    med = statistics.median(times)
    return {"first_call_s": first, "n_steps": n, "repeats": repeats, "clock": ("wall", "cpu")[clock],
            "per_step_s": med, "min_s": min(times), "max_s": max(times),
            "spread": (max(times) - min(times)) / med, "steps_per_s": 1.0 / med,
            "wall_per_step_s": wall, "cpu_per_step_s": cpu,
            "cpu_over_wall": statistics.median(c / w for w, c in zip(wall, cpu, strict=True))}


def check_population(runner, reference, n):
    """Max relative difference of ``(W, E)`` after ``n`` steps from the same start."""
    runner.reset()
    runner.run(n)
    W, E = runner.state()
    W_ref, E_ref = reference
    return max(float(np.max(np.abs(W - W_ref)) / np.max(np.abs(W_ref))),
               float(np.max(np.abs(E - E_ref)) / np.max(np.abs(E_ref))))


def run_benchmarks(args):
    results = []
    refs = {}
    for key, label, kind, d, factory in contenders():
        if args.only and not any(s in key for s in args.only):
            continue
        model = ts.ModelParams(d=d)
        W0 = ts.initial_weights(model, SEED)
        row = {"key": key, "label": label, "kind": kind, "d": d,
               "batch": SGD_BATCH if kind == "sgd" else None, "P": model.P}
        t_start = time.perf_counter()
        try:
            runner = factory(model, W0)
            max_steps = 10**9 if key.startswith("ts-") or key.startswith("jax-pop") else 10**6
            row.update(measure(runner, target=args.target, repeats=args.repeats, max_steps=max_steps,
                               clock=int(args.clock == "cpu")))
            if kind == "population" and args.check_steps > 0:
                if key.startswith("ts-pop"):
                    runner.reset()
                    runner.run(args.check_steps)
                    refs[d] = runner.state()
                    row["check_max_rel_diff"] = 0.0
                elif d in refs:
                    row["check_max_rel_diff"] = check_population(runner, refs[d], args.check_steps)
            row["status"] = "ok"
        except Skipped as exc:
            row.update(status="skipped", message=str(exc))
        except Exception as exc:  # a failing contender must not stop the others
            row.update(status="error", message=f"{type(exc).__name__}: {exc}",
                       traceback=traceback.format_exc())
        row["wall_s"] = time.perf_counter() - t_start
        results.append(row)
        _print_row_progress(row)
    return results


def sgd_gradient_check():
    """Peers' loss and gradient on theory-sim's own batch (d = 512, batch 256)."""
    model = ts.ModelParams(d=SGD_D)
    W0 = ts.initial_weights(model, SEED)
    E = np.eye(model.m) + 0.05 * np.array([[0.0, 1.0], [-1.0, 0.0]])
    gW, gE, loss, batch = ts.sgd_gradient(W0, E, model, batch=SGD_BATCH, seed=SEED, step=3,
                                          return_batch=True)
    out = {}
    for name in ("torch", "jax"):
        try:
            mod = _peer(name)
            l2, gW2, gE2 = mod.sgd_loss_grad(W0, E, batch["X"], batch["view1"])
            out[name] = {"loss_rel": abs(l2 - loss) / abs(loss),
                         "gW_rel": float(np.max(np.abs(gW2 - gW)) / np.max(np.abs(gW))),
                         "gE_rel": float(np.max(np.abs(gE2 - gE)) / np.max(np.abs(gE)))}
        except Skipped as exc:
            out[name] = {"skipped": str(exc)}
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


# ---------------------------------------------------------------- subprocess measurements

COMPILE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    import theory_sim as ts
    out = {"import_s": time.perf_counter() - t0}
    m = ts.ModelParams(d=64)
    for engine in sys.argv[1:]:
        t = time.perf_counter()
        ts.simulate(m, ts.TrainParams(steps=2, record=2, engine=engine, batch=8))
        out[engine + "_first_call_s"] = time.perf_counter() - t
    t = time.perf_counter()
    W = ts.initial_weights(m, 1)
    ts.population_grad(W, np.eye(2), m)
    if "sgd" in sys.argv[1:]:
        ts.sgd_gradient(W, np.eye(2), m, batch=8)
    out["wrappers_first_call_s"] = time.perf_counter() - t
    out["total_s"] = time.perf_counter() - t0
    print(json.dumps(out))
""")

LAUNCHER = textwrap.dedent("""
    import json, os, sys, time
    report, timeout, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    deadline, timed_out = time.monotonic() + timeout, False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            done, status, usage = os.wait4(pid, 0)
            timed_out = True
            break
        time.sleep(0.01)
    with open(report, "w") as f:
        json.dump({"exit": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
                   "cpu_s": usage.ru_utime + usage.ru_stime, "timed_out": timed_out}, f)
""")


def _run_child(cmd, env, timeout):
    """Run ``cmd``; return ``(returncode, stdout, stderr, wall_s, maxrss_MiB, cpu_s)`` of that process.

    The peak RSS comes from ``wait4`` in a small launcher process (``python -I -S``):
    Linux carries ``ru_maxrss`` over ``fork`` and ``exec``, so a child forked from this
    process (numpy, torch and jax loaded) would report at least this process's RSS.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rusage.json"
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        t0 = time.perf_counter()
        with open(out, "w") as fo, open(err, "w") as fe:
            subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, str(report), str(timeout)] + cmd,
                           env=env, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, timeout=timeout + 60)
        wall = time.perf_counter() - t0
        usage = json.loads(report.read_text())
        rc = usage["exit"] if not usage["timed_out"] else "timeout"
        # Linux: ru_maxrss in KiB
        return rc, out.read_text(), err.read_text(), wall, usage["maxrss_kb"] / 1024.0, usage["cpu_s"]


def compile_times(cache_dir, engines, timeout):
    """Cold (empty NUMBA_CACHE_DIR) and warm (same directory again) first-call times."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = {"engines": list(engines)}
    for label in ("cold", "warm"):
        try:
            rc, so, se, wall, rss, cpu = _run_child([sys.executable, "-c", COMPILE_SCRIPT, *engines], env,
                                                    timeout)
        except Exception as exc:
            out[label] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        if rc != 0:
            out[label] = {"error": f"exit {rc}: {se.strip().splitlines()[-1:]}"}
            continue
        out[label] = json.loads(so.strip().splitlines()[-1]) | {"process_wall_s": wall,
                                                                "process_cpu_s": cpu, "maxrss_MiB": rss}
    return out


def cli_command():
    exe = Path(sys.executable).with_name("theory-sim")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "theory_sim.cli"]


def peak_memory(tmp, cache_dir, extra, timeout):
    """Peak RSS of ``theory-sim run --d 512 --eta 1e-3 --quiet --out <tmp>`` (and its wall time)."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    args = ["run", "--d", "512", "--eta", "1e-3", "--quiet", "--out", str(Path(tmp) / "run")] + extra
    shown = "theory-sim " + " ".join(a if not a.startswith(str(tmp)) else "<tmpdir>/run" for a in args)
    try:
        rc, so, se, wall, rss, cpu = _run_child(cli_command() + args, env, timeout)
    except Exception as exc:
        return {"command": shown, "error": f"{type(exc).__name__}: {exc}"}
    first = so.strip().splitlines()[0] if so.strip() else se.strip()[-300:]
    return {"command": shown, "exit": rc, "maxrss_MiB": rss, "wall_s": wall, "cpu_s": cpu,
            "summary": first}


def set_threads(n):
    """Same thread count for every library (XLA can only be made single-threaded, and only
    before jax is imported)."""
    import numba

    numba.set_num_threads(n)
    if n == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


# ---------------------------------------------------------------- report

def environment():
    import numba

    env = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu": _cpu_model(), "cpus": os.cpu_count(), "numpy": np.__version__,
           "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
           "theory_sim": ts.__version__, "git": _git_state()}
    for name in ("torch", "jax"):
        try:
            env.update(_peer(name).versions())
        except Skipped:
            env[name] = None
        except Exception as exc:
            env[name] = f"error: {exc}"
    return env


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_state():
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def fmt_time(s):
    if s is None or not math.isfinite(s):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _print_row_progress(row):
    what = row["status"]
    if what == "ok":
        what = f"{fmt_time(row['per_step_s'])}/step"
    elif "message" in row:
        what += f": {row['message']}"
    print(f"  [{row['wall_s']:5.1f} s] {row['key']:<18s} {what}", file=sys.stderr, flush=True)


def ratios(results):
    base = {(r["kind"], r["d"]): r for r in results
            if r["status"] == "ok" and r["key"].startswith(("ts-pop-", "ts-sgd-"))}
    for r in results:
        b = base.get((r["kind"], r["d"]))
        r["ratio_vs_theory_sim"] = (r["per_step_s"] / b["per_step_s"]
                                    if b is not None and r["status"] == "ok" else None)


def table(results):
    head = (f"{'contender':<46s} {'d':>6s} {'per step':>9s} {'min - max':>19s} {'steps/s':>9s} "
            f"{'ratio':>9s} {'cpu/wall':>8s} {'1st call':>9s} {'check':>8s}")
    lines = [head, "-" * len(head)]
    for r in results:
        name = r["label"] + (f" (N={r['batch']}, P={r['P']})" if r["kind"] == "sgd" else "")
        if r["status"] != "ok":
            lines.append(f"{name:<46s} {r['d']:>6d}  {r['status']}: {r.get('message', '')}")
            continue
        ratio = r.get("ratio_vs_theory_sim")
        chk = r.get("check_max_rel_diff")
        lines.append(
            f"{name:<46s} {r['d']:>6d} {fmt_time(r['per_step_s']):>9s} "
            f"{fmt_time(r['min_s']) + ' - ' + fmt_time(r['max_s']):>19s} {r['steps_per_s']:>9.3g} "
            f"{(f'{ratio:.3g}x' if ratio is not None else '-'):>9s} {r['cpu_over_wall']:>8.2f} "
            f"{fmt_time(r['first_call_s']):>9s} {(f'{chk:.0e}' if chk is not None else '-'):>8s}")
    return "\n".join(lines)


FLOW_D_LARGE = 10**9


def flow_benchmarks(repeats: int) -> dict:
    """The flow engine (issue 10's targets), inside ``simulate``, in this one run:

    1. the default run (d = 512, seed 1, eta = 1e-3, eta_E = eta / 10) to convergence with
       ``engine="flow"`` against the discrete population engine on the same run
       (``Run.elapsed``, warm, best of ``repeats``; the population engine once: it takes a
       second or more); RHS evaluations beside the discrete steps;
    2. d = 1e9 with ``init="reduced"`` at the flow engine's default cap.
    """
    model = ts.ModelParams()
    flow_train = ts.TrainParams(engine="flow")
    ts.simulate(model, flow_train)  # warm-up: compile
    ts.simulate(model, ts.TrainParams(steps=100))
    best = None
    for _ in range(repeats):
        run = ts.simulate(model, flow_train)
        best = run if best is None or run.elapsed < best.elapsed else best
    pop = ts.simulate(model, ts.TrainParams())
    pt_f, pt_p = ts.analysis.phase_times(best), ts.analysis.phase_times(pop)
    out = {"default": {
        "flow_ms": best.elapsed * 1e3, "flow_status": best.status, "flow_time": float(best.flow_time[-1]),
        "flow_stats": best.stats, "flow_phase_times": pt_f.flow_times(),
        "population_s": pop.elapsed, "population_status": pop.status, "population_steps": int(pop.steps[-1]),
        "population_phase_times": pt_p.flow_times(), "speedup": pop.elapsed / best.elapsed}}
    big = ts.ModelParams(d=FLOW_D_LARGE)
    big_train = ts.TrainParams(engine="flow", init="reduced")
    t0 = time.perf_counter()
    run = ts.simulate(big, big_train)
    out["d1e9"] = {"wall_s": time.perf_counter() - t0, "elapsed_s": run.elapsed, "status": run.status,
                   "message": run.message, "flow_time": float(run.flow_time[-1]), "stats": run.stats,
                   "phase_times": ts.analysis.phase_times(run).flow_times()}
    return out


def print_flow(f: dict) -> None:
    d = f["default"]
    s = d["flow_stats"]
    print("flow engine, default run (d=512, alpha=(6,3), seed 1, eta=1e-3, eta_E=1e-4) to convergence, "
          "inside simulate (Run.elapsed, warm):")
    print(f"  flow      : {d['flow_ms']:8.3f} ms  {d['flow_status']} at t = {d['flow_time']:.2f}; "
          f"{s['n_rhs']} RHS evaluations, {s['accepted_steps']} accepted steps ({s['stiff_steps']} stiff), "
          f"{s['rejected_steps']} rejected, {s['switches']} switches   [target < 5 ms]")
    print(f"  population: {d['population_s'] * 1e3:8.1f} ms  {d['population_status']}, "
          f"{d['population_steps']} steps")
    print(f"  speed-up {d['speedup']:.0f}x [target >= 300x]; {d['population_steps'] / s['n_rhs']:.0f}x fewer "
          f"gradient evaluations than steps")
    print("  phase times (flow time): flow " + ", ".join(
        f"{k} {v:.6g}" for k, v in d["flow_phase_times"].items() if v is not None)
        + "; population " + ", ".join(f"{k} {v:.6g}" for k, v in d["population_phase_times"].items()
                                      if v is not None))
    b = f["d1e9"]
    print(f"flow engine, d = 1e9, --init reduced, default cap: {b['elapsed_s'] * 1e3:.1f} ms in the kernel "
          f"({b['wall_s'] * 1e3:.1f} ms wall), {b['stats']['n_rhs']} RHS evaluations; {b['message']}; "
          f"T1 = {b['phase_times']['T1']}   [target (to convergence) < 50 ms]")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short repeats and a capped main run for the memory figure (under 60 s)")
    p.add_argument("--json", metavar="PATH", help="also write every measurement to PATH")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (7; quick 3)")
    p.add_argument("--target", type=float, default=None,
                   help="seconds per timed repeat (1.0; quick 0.1)")
    p.add_argument("--check-steps", type=int, default=None,
                   help="population steps compared between contenders (1000; quick 100; 0: off)")
    p.add_argument("--only", nargs="*", help="run the contenders whose key contains one of these")
    p.add_argument("--no-compile", action="store_true", help="skip the compile-time subprocesses")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time to report: wall clock (default) or this process's CPU time, all threads "
                        "together (use with --threads 1 on a busy machine)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for numba, torch and (1 only) XLA; default: each library's own")
    p.add_argument("--flow-only", action="store_true",
                   help="only the flow engine against the discrete population engine (seconds)")
    args = p.parse_args(argv)
    if args.flow_only:
        print_flow(flow_benchmarks(args.repeats or 5))
        return 0
    if args.threads is not None:
        set_threads(args.threads)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.target = args.target or (0.1 if args.quick else 1.0)
    if args.check_steps is None:
        args.check_steps = 100 if args.quick else 1000

    t_all = time.perf_counter()
    report = {"mode": "quick" if args.quick else "full", "eta": ETA, "seed": SEED,
              "threads": args.threads, "environment": environment(), "loadavg_start": os.getloadavg()}
    if report["loadavg_start"][0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {report['loadavg_start'][0]:.2f} on {os.cpu_count()} CPUs: "
              "other processes compete for the cores and the timings will be noisy",
              file=sys.stderr, flush=True)
    env = report["environment"]
    print(f"theory-sim {env['theory_sim']} ({env['git']}), numba {env['numba']} "
          f"({env['numba_threads']} threads), torch {env.get('torch')}, jax {env.get('jax')}; "
          f"{env['cpu']}, {env['cpus']} CPUs", flush=True)

    with tempfile.TemporaryDirectory(prefix="theory-sim-bench-") as tmp:
        cache_dir = None
        if not args.no_compile:
            print("compile time (fresh NUMBA_CACHE_DIR, subprocess) ...", file=sys.stderr, flush=True)
            cache_dir = Path(tmp) / "numba-cache"
            cache_dir.mkdir()
            engines = ["population"] if args.quick else list(ENGINES)
            report["compile"] = compile_times(cache_dir, engines, timeout=600)

        print("flow engine ...", file=sys.stderr, flush=True)
        report["flow"] = flow_benchmarks(args.repeats)
        print("per-step times ...", file=sys.stderr, flush=True)
        results = run_benchmarks(args)
        ratios(results)
        report["results"] = results
        try:
            report["sgd_gradient_check"] = sgd_gradient_check()
        except Exception as exc:
            report["sgd_gradient_check"] = {"theory-sim": {"error": f"{type(exc).__name__}: {exc}"}}

        if not args.no_memory:
            print("peak memory of theory-sim run (subprocess) ...", file=sys.stderr, flush=True)
            extra = ["--steps", "200000"] if args.quick else []
            report["memory"] = peak_memory(tmp, cache_dir, extra, timeout=600)

    print()
    print(table(results))
    print(f"per step: median {args.clock} time over {args.repeats} repeats; ratio = contender / theory-sim "
          "engine (same kind and d); cpu/wall = process CPU time / wall time (threads busy); "
          f"check = max rel. difference of (W, E) from theory-sim after {args.check_steps} population steps")
    print_flow(report["flow"])
    chk = report["sgd_gradient_check"]
    print("SGD gradient on theory-sim's batch (max rel. diff loss / dW / dE): " + "; ".join(
        f"{k}: " + (f"{v['loss_rel']:.1e} / {v['gW_rel']:.1e} / {v['gE_rel']:.1e}"
                    if "gW_rel" in v else next(iter(v.values())))
        for k, v in chk.items()))
    if "compile" in report:
        for label in ("cold", "warm"):
            c = report["compile"][label]
            if "error" in c:
                print(f"compile ({label} cache): {c['error']}")
                continue
            parts = [f"{k[: -len('_first_call_s')]} engine {v:.2f} s" for k, v in c.items()
                     if k.endswith("_first_call_s") and not k.startswith("wrappers")]
            print(f"first call, {label} numba cache: import {c['import_s']:.2f} s, " + ", ".join(parts)
                  + f", public wrappers {c['wrappers_first_call_s']:.2f} s; whole process "
                  f"{c['process_wall_s']:.1f} s ({c['process_cpu_s']:.1f} s CPU), "
                  f"peak RSS {c['maxrss_MiB']:.0f} MiB")
    if "memory" in report:
        mem = report["memory"]
        if "error" in mem:
            print(f"peak RSS of `{mem['command']}`: {mem['error']}")
        else:
            print(f"peak RSS of `{mem['command']}`: {mem['maxrss_MiB']:.0f} MiB "
                  f"(exit {mem['exit']}, {mem['wall_s']:.1f} s, {mem['cpu_s']:.1f} s CPU; {mem['summary']})")
    report["total_s"] = time.perf_counter() - t_all
    report["loadavg_end"] = os.getloadavg()
    print(f"total {report['total_s']:.1f} s; load average (1 min) {report['loadavg_start'][0]:.2f} "
          f"at the start, {report['loadavg_end'][0]:.2f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
