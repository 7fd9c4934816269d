"""Every run to its fate: the flow engine's cost through every phase (issue "every run to its fate").

Run: ``python benchmarks/flow_fate.py`` (about a minute); ``--t-max 1e300 --wall 45`` integrates
past the default cap (45 s per run at most); ``--jump``: the default model at d = 1e9, seed 1.
Fig. 8's regime (``alpha = (log2 d, log2 d / ln d)``, ``eta_E/eta = 1/alpha_1^2``, reduced
initial law), each run integrated with the engine's defaults: no step budget, no heuristic stop,
the default flow-time cap
(``engines.flow.horizon``: 1e12 x the leading-order T1 prediction). Prints per run: RHS
evaluations, accepted / rejected / stiff steps, status, outcome, end time, T1, T3, the most
evaluations spent in one decade of flow time after T1 (``engines.flow.integrate`` to each
decade's end), and the conservation errors of the invariants (``||W||_F``; each row's norm with
the head frozen).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import theory_sim as ts
from theory_sim.engines import flow as engine
from theory_sim.experiments.fig8_paper_regime import regime_alpha, regime_ratio
from theory_sim.initial_law import reduced_coordinates
from theory_sim.outcome import classify

FROZEN = [(1e8, s) for s in (2, 6, 9, 10)] + [(1e10, s) for s in (1, 2, 3, 4)]
HEAD = [(d, s) for d in (1e4, 1e5, 1e6) for s in range(1, 7)]


def regime(d: float):
    """Fig. 8's model and ``eta_E/eta`` at ``d`` (``experiments.fig8_paper_regime``)."""
    return ts.ModelParams(alpha=regime_alpha(d)), regime_ratio(d)


def run(d: float, seed: int, head: str, *, t_max=None, wall=math.inf, model=None, ratio=None) -> dict:
    """One run; ``t_max`` overrides the default cap, ``wall`` (s) stops it early (status ``running``)."""
    if model is None:
        model, ratio = regime(d)
    train = ts.TrainParams(eta=1.0, eta_E=ratio, seed=seed, head=head, engine="flow")
    B0, Vr = reduced_coordinates(model.m, model.L, d, seed)
    cap = {} if t_max is None else {"t_max": t_max}
    st = engine.new_state(model, train, B0, Vr, t_record=np.zeros(0), **cap)
    t0 = time.perf_counter()
    deadline = t0 + wall

    def go(until):
        while st.running and time.perf_counter() < deadline:
            if (until == "T1" and np.any(st.t1 >= 0)) or (until != "T1" and st.time >= until):
                return
            engine.advance(st, 2000, t_stop=math.inf if until == "T1" else until, stop_at_t1=until == "T1")

    per_decade = []  # evaluations in [10^k, 10^(k+1)) T1 (the first T1), k = 0, 1, ...
    go("T1")
    if np.any(st.t1 >= 0):
        T1, n = float(st.t1[st.t1 >= 0].min()), st.stats()["n_rhs"]
        while st.running and time.perf_counter() < deadline:
            go(T1 * 10.0 ** (len(per_decade) + 1))
            per_decade.append(st.stats()["n_rhs"] - n)
            n += per_decade[-1]
    wall_used = time.perf_counter() - t0
    B, E = st.coordinates(), st.head()
    nrm, nrm0 = np.linalg.norm(B, axis=1), np.linalg.norm(B0, axis=1)
    status = "running" if st.running else ts.status.STATUS_NAMES[st.status]
    c, _, outcome = classify(B @ Vr, nrm, status, train.align_threshold)
    t1 = st.t1[st.t1 >= 0]
    t3 = st.t2[st.t2 >= 0]
    f = int(np.argmin(c.max(axis=1)))  # the neuron least aligned: the follower, if any
    return {"d": d, "seed": seed, "head": head, "status": status, "outcome": outcome,
            "t": st.time, "T1": float(t1.min()) if t1.size else None,
            "T3": float(t3.min()) if t3.size else None, **st.stats(), "wall": wall_used,
            "per_decade": per_decade, "max_per_decade": max(per_decade, default=0),
            "frob_err": abs(np.linalg.norm(B) / np.linalg.norm(B0) - 1.0),
            "row_err": float(np.max(np.abs(nrm / nrm0 - 1.0))),
            "follower": (float(nrm[f]), float(c[f, 0]), float(c[f, -1]),
                         float(np.max(np.abs(np.delete(E[f], f)))))}


def _g(x) -> str:
    return f"{x:10.4g}" if x is not None else f"{'-':>10}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--t-max", type=float, default=None, help="flow-time cap of every run (default: engine's)")
    p.add_argument("--wall", type=float, default=math.inf, help="seconds per run before it is stopped")
    p.add_argument("--jump", action="store_true",
                   help="the default model at d = 1e9, seed 1, trainable head (docs/flow.md section 4)")
    a = p.parse_args(argv)
    run(1e4, 1, "offdiag", wall=60)  # warm-up (compile)
    if a.jump:
        r = run(1e9, 1, "offdiag", t_max=a.t_max, wall=a.wall, model=ts.ModelParams(), ratio=0.1)
        print(f"status {r['status']} at t = {r['t']:.4g}, T1 = {r['T1']:.4g}, {r['n_rhs']} evaluations, "
              f"{r['wall']:.1f} s; per decade after T1: {r['per_decade']}")
        return
    print(f"{'d':>6} {'seed':>4} {'head':>7} {'rhs':>8} {'acc':>6} {'rej':>5} {'stiff':>6} {'status':>10} "
          f"{'outcome':>10} {'t_end':>10} {'T1':>10} {'T3':>10} {'max/dec':>8} {'|W|F err':>9} "
          f"{'row err':>8}  follower at the end: |w_f|, |c_f1|, |c_f2|, |E_fl|")
    for head, cases in (("frozen", FROZEN), ("offdiag", HEAD)):
        for d, s in cases:
            r = run(d, s, head, t_max=a.t_max, wall=a.wall)
            fol = " ".join(f"{x:.3g}" for x in r["follower"])
            print(f"{d:6.0e} {s:4d} {head:>7} {r['n_rhs']:8d} {r['accepted_steps']:6d} "
                  f"{r['rejected_steps']:5d} {r['stiff_steps']:6d} {r['status']:>10} {r['outcome']:>10} "
                  f"{_g(r['t'])} {_g(r['T1'])} {_g(r['T3'])} {r['max_per_decade']:8d} {r['frob_err']:9.1e} "
                  f"{r['row_err']:8.1e}  {fol}", flush=True)


if __name__ == "__main__":
    main()
