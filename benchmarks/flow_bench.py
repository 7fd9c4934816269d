"""Flow kernel against the discrete population engine (issue 10; docs/model.md section 11).

Run: ``python benchmarks/flow_bench.py`` (the kernel through ``engines.flow.integrate``; the
public path is ``benchmarks/run.py --flow-only``). Every ratio is measured in this one run, after
a warm-up call of each kernel (numba compile). Times are kernel time only
(``Run.elapsed`` / the flow wrapper's ``elapsed``), best of ``REPEATS``.

1. The default run (d=512, alpha=(6,3), seed 1, eta_E/eta=0.1) to convergence: flow vs the
   discrete engine at eta=1e-3 (targets: >= 300x, < 5 ms); RHS evaluations vs steps.
2. d = 1e9 with the reduced initial law, to flow time 1e13: through T1 ~ 9.8e12 and the
   follower's jump (docs/flow.md section 4); the run itself never settles.
3. The vanishing follower (d=1e4, alpha=(6, 0.651), eta_E/eta=0.109) integrated to
   1e2, 1e3, 1e4 x its T1 with the vanishing stop off, seeds 0-7: RHS evaluations (target
   <= 10,000 at 1e4 T1, growing like log T), with the stiff method ROS34PW2 (default) and,
   for seed 1, Rodas4.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

import theory_sim as ts
from theory_sim.engines import flow as engine
from theory_sim.initial_law import reduced_coordinates

REPEATS = 5
VANISH_SEED = 1


def integrate_flow(model, train, *, B0, Vr, **opts) -> dict:
    """One flow run from ``(B0, Vr)`` to its stop (``opts``: ``engines.flow.new_state``'s overrides)."""
    st = engine.new_state(model, dataclasses.replace(train, engine="flow"), B0, Vr, t_record=np.zeros(0),
                          **opts)
    engine.integrate(st)
    stats = st.stats()
    return {"status": ts.status.STATUS_NAMES[st.status], "t": st.time, "E": st.head(),
            "phase_times": st.phase_times(), "elapsed": st.elapsed, "n_rhs": stats["n_rhs"],
            "n_steps": stats["accepted_steps"], "n_rejected": stats["rejected_steps"],
            "n_stiff_steps": stats["stiff_steps"], "n_jac": stats["jacobians"]}


def best(fn, repeats=REPEATS):
    out, t = None, math.inf
    for _ in range(repeats):
        res = fn()
        t = min(t, res["elapsed"] if isinstance(res, dict) else res.elapsed)
        out = res
    return out, t


def main():
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = engine.reduced_start(model, 1)
    # warm-up (compile)
    integrate_flow(model, train, B0=B, Vr=Vr)
    ts.simulate(model, ts.TrainParams(steps=100))

    print("1. default run (d=512, alpha=(6,3), seed 1, eta_E/eta=0.1) to convergence")
    flow, t_flow = best(lambda: integrate_flow(model, train, B0=B, Vr=Vr))
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

    print("2. d = 1e9, reduced initial law (seed 1), to flow time 1e13")
    Bd, Vrd = reduced_coordinates(model.m, model.L, 10**9, 1)
    big, t_big = best(lambda: integrate_flow(model, train, B0=Bd, Vr=Vrd, t_max=1e13))
    lead = big["phase_times"]["leader"]
    print(f"   {t_big * 1e3:8.2f} ms  status={big['status']} t={big['t']:.5g} "
          f"T1={big['phase_times']['T1']:.5g} "
          f"rhs={big['n_rhs']} steps={big['n_steps']} stiff steps={big['n_stiff_steps']} "
          f"|E_fl|={abs(big['E'][1 - lead, lead]):.3g}")

    print("3. vanishing follower (d=1e4, alpha=(6,0.651), eta_E/eta=0.109), vanishing stop off: "
          "rhs to k x T1")
    vm = ts.ModelParams(d=10_000, alpha=(6.0, 0.651))
    vt = ts.TrainParams(eta=1e-3, eta_E=1.09e-4)
    print("   seed  method        T1        1e2 T1   1e3 T1   1e4 T1   (steps/stiff/jacobians at 1e4 T1, ms)")
    for seed, method in [(s, "ros34pw2") for s in range(8)] + [(VANISH_SEED, "rodas4")]:
        Bv, Vrv = engine.reduced_start(vm, seed, "reduced")
        pre = integrate_flow(vm, vt, B0=Bv, Vr=Vrv, t_max=1e7, vanish_persist=math.inf)
        T1 = pre["phase_times"]["T1"]
        if T1 is None:
            print(f"   {seed:4d}  {method:9s}  no T1 by t = 1e7 ({pre['status']})")
            continue
        counts = []
        for factor in (1e2, 1e3, 1e4):
            res = integrate_flow(vm, vt, B0=Bv, Vr=Vrv, t_max=factor * T1, vanish_persist=math.inf,
                                    stiff_method=method)
            counts.append(res["n_rhs"])
        print(f"   {seed:4d}  {method:9s} {T1:9.4g} " + " ".join(f"{c:8d}" for c in counts)
              + f"   ({res['n_steps']}/{res['n_stiff_steps']}/{res['n_jac']}, {res['elapsed'] * 1e3:.1f} ms)")
    print("   [target: <= 10,000 rhs at 1e4 T1, growing like log T]")


if __name__ == "__main__":
    main()
