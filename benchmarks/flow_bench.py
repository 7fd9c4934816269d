"""Flow kernel against the discrete population engine (issue 10; docs/model.md section 11).

Run: ``python benchmarks/flow_bench.py`` (the kernel through ``tests/flow_support.py``; the
public path is ``benchmarks/run.py --flow-only``). Every ratio is measured in this one run, after
a warm-up call of each kernel (numba compile). Times are kernel time only
(``Run.elapsed`` / the flow wrapper's ``elapsed``), best of ``REPEATS``.

1. The default run (d=512, alpha=(6,3), seed 1, eta_E/eta=0.1) to convergence: flow vs the
   discrete engine at eta=1e-3 (targets: >= 300x, < 5 ms); RHS evaluations vs steps.
2. d = 1e9 with the reduced initial law, to convergence (target < 50 ms).
3. The vanishing follower (d=1e4, alpha=(6, 0.651), eta_E/eta=0.109) integrated to
   1e2, 1e3, 1e4 x its T1 with the vanishing stop off: RHS evaluations (target <= 10,000
   at 1e4 T1, growing like log T).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import flow_support as fs  # noqa: E402  (the kernel at the level of its arrays)

import theory_sim as ts  # noqa: E402
from theory_sim.initial_law import reduced_coordinates  # noqa: E402

REPEATS = 5
VANISH_SEED = 1


def best(fn, repeats=REPEATS):
    out, t = None, math.inf
    for _ in range(repeats):
        res = fn()
        t = min(t, res["elapsed"] if isinstance(res, dict) else res.elapsed)
        out = res
    return out, t


def main():
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = fs.reduced_start(model, 1)
    # warm-up (compile)
    fs.integrate_flow(model, train, B0=B, Vr=Vr)
    ts.simulate(model, ts.TrainParams(steps=100))

    print("1. default run (d=512, alpha=(6,3), seed 1, eta_E/eta=0.1) to convergence")
    flow, t_flow = best(lambda: fs.integrate_flow(model, train, B0=B, Vr=Vr))
    t0 = time.perf_counter()
    disc = ts.simulate(model, ts.TrainParams(eta=1e-3, eta_E=1e-4))
    wall_disc = time.perf_counter() - t0
    steps = int(disc.steps[-1])
    pt = flow["phase_times"]
    print(f"   flow    : {t_flow * 1e3:8.3f} ms  status={flow['status']} t={flow['t']:.2f} "
          f"rhs={flow['n_rhs']} steps={flow['n_steps']} rejected={flow['n_rejected']} "
          f"phase={ {k: (round(v, 3) if isinstance(v, float) else v) for k, v in pt.items()} }")
    print(f"   discrete: {disc.elapsed * 1e3:8.1f} ms  (wall {wall_disc:.2f} s) status={disc.status} "
          f"steps={steps} (eta=1e-3, flow time {steps * 1e-3:.1f})")
    print(f"   speed-up (kernel time): {disc.elapsed / t_flow:8.0f} x   [target >= 300x, flow < 5 ms]")
    print(f"   gradient evaluations  : {flow['n_rhs']} vs {steps} steps "
          f"({steps / flow['n_rhs']:.0f} x fewer)")

    print("2. d = 1e9, reduced initial law (seed 1): through T1, then a budget of 200,000 steps")
    Bd, Vrd = reduced_coordinates(model.m, model.L, 10**9, 1)
    st = fs.new_state(model, train, B0=Bd, Vr=Vrd, t_max=1e300)
    while fs.result(st)["phase_times"]["T1"] is None and fs.result(st)["status"] == "interrupted":
        fs.advance(st, 10)
    r1 = fs.result(st)
    print(f"   to T1   : {r1['elapsed'] * 1e3:8.3f} ms  T1={r1['phase_times']['T1']:.6g} rhs={r1['n_rhs']} "
          f"steps={r1['n_steps']} rejected={r1['n_rejected']}   [target (to convergence) < 50 ms]")
    fs.advance(st, 200_000)
    r2 = fs.result(st)
    lead = r2["phase_times"]["leader"]
    print(f"   +200k steps: {r2['elapsed']:.2f} s  status={r2['status']} t={r2['t']:.4g} rhs={r2['n_rhs']} "
          f"stiff steps={r2['n_stiff_steps']} |E_fl|={abs(r2['E'][1 - lead, lead]):.3g} "
          f"(NOT converged: see the report)")

    print("3. vanishing follower (d=1e4, alpha=(6,0.651), eta_E/eta=0.109, seed "
          f"{VANISH_SEED}), vanishing stop off")
    vm = ts.ModelParams(d=10_000, alpha=(6.0, 0.651))
    vt = ts.TrainParams(eta=1e-3, eta_E=1.09e-4)
    Bv, Vrv = fs.reduced_start(vm, VANISH_SEED, "reduced")
    pre = fs.integrate_flow(vm, vt, B0=Bv, Vr=Vrv, t_max=1e6, vanish_persist=math.inf)
    T1 = pre["phase_times"]["T1"]
    stop = fs.integrate_flow(vm, vt, B0=Bv, Vr=Vrv, t_max=1e4 * T1)
    print(f"   T1 = {T1:.4g}; with the vanishing rule on: status={stop['status']} at t={stop['t']:.4g} "
          f"({stop['t'] / T1:.3g} T1, {stop['n_rhs']} rhs)")
    for factor in (1e2, 1e3, 1e4):
        res, t_v = best(lambda f=factor: fs.integrate_flow(vm, vt, B0=Bv, Vr=Vrv, t_max=f * T1,
                                                          vanish_persist=math.inf), repeats=2)
        fol = 1 - res["phase_times"]["leader"]
        nrm = math.sqrt(float((res["B"][fol] ** 2).sum()))
        print(f"   to {factor:7.0e} T1: rhs={res['n_rhs']:6d} steps={res['n_steps']:5d} "
              f"stiff steps={res['n_stiff_steps']:5d} jacobians={res['n_jac']:4d} "
              f"switches={res['n_switches']} "
              f"|w_f|={nrm:.3f} |E_fl|={abs(res['E'][fol, 1 - fol]):.3f} time={t_v * 1e3:.2f} ms")
    print("   [target: <= 10,000 rhs at 1e4 T1, growing like log T]")


if __name__ == "__main__":
    main()
