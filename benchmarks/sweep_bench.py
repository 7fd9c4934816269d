"""Throughput of population runs: a Python loop over simulate() vs the batched kernel
(in this process) vs Dask with 2 workers; optionally the wall time of the full
10 x 10 x 32 sweep through the CLI.

    python benchmarks/sweep_bench.py                 # runs/s, three ways, same runs
    python benchmarks/sweep_bench.py --full          # + the 3,200-run sweep (minutes)

Every way runs the same (parameters, seed) list: d = 512, eta = 1e-2, run until
converged or capped at --max-flow-time (the cap the sweep uses). Numba compilation
and the Dask workers' start-up are done before timing. The machine's other load is
printed with the numbers: on a shared 2-core machine it changes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP_ARGS = ["--grid", "alpha1=lin:4:8:10", "--grid", "eta_E_ratio=log:0.01:1:10", "--seeds", "32",
              "--d", "512", "--eta", "1e-2"]


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def _cpu_seconds() -> float:
    """CPU time of the calling process (run on each Dask worker)."""
    return time.process_time()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=64, help="seeds in the timed sample (default 64)")
    p.add_argument("--max-flow-time", type=float, default=5e3,
                   help="cap on eta*steps, as in the sweep (default 5e3)")
    p.add_argument("--eta-E-ratio", type=float, default=0.1)
    p.add_argument("--alpha", default="6,3")
    p.add_argument("--full", action="store_true", help="also time the 10 x 10 x 32 sweep (CLI)")
    p.add_argument("--json", default=None, help="write the numbers to this file")
    args = p.parse_args(argv)

    from theory_sim import ModelParams, TrainParams, simulate
    from theory_sim import sweep as sw
    from theory_sim.ensemble import simulate_many

    alpha = tuple(float(a) for a in args.alpha.split(","))
    model = ModelParams(d=512, alpha=alpha)
    trains = [TrainParams(eta=1e-2, eta_E=args.eta_E_ratio * 1e-2, seed=s,
                          max_flow_time=args.max_flow_time) for s in range(args.runs)]
    out = {"runs": args.runs, "d": 512, "eta": 1e-2, "alpha": alpha,
           "eta_E_ratio": args.eta_E_ratio, "max_flow_time": args.max_flow_time,
           "cores": os.cpu_count()}

    # compile / load every kernel first
    warm = [TrainParams(eta=1e-2, seed=0, steps=100)]
    simulate(model, warm[0])
    simulate_many(model, warm, parallel=True)
    simulate_many(model, warm, parallel=False)

    print(f"{args.runs} population runs, d=512, eta=1e-2, alpha={alpha}, eta_E/eta="
          f"{args.eta_E_ratio:g}, cap flow time {args.max_flow_time:g}; load {_load()}")

    t0, c0 = time.perf_counter(), time.process_time()
    loop = [simulate(model, t) for t in trains]
    t_loop, cpu_loop = time.perf_counter() - t0, time.process_time() - c0
    steps = sum(int(r.steps[-1]) for r in loop)
    out["steps_total"] = steps
    out["loop"] = {"seconds": t_loop, "cpu_seconds": cpu_loop, "runs_per_s": args.runs / t_loop}
    print(f"  python loop over simulate(): {t_loop:7.2f} s  {args.runs / t_loop:8.2f} runs/s  "
          f"(cpu {cpu_loop:.2f} s = {cpu_loop / steps * 1e9:.0f} ns/step; {steps:.3g} steps)")

    t0, c0 = time.perf_counter(), time.process_time()
    batched = simulate_many(model, trains, parallel=True)
    t_b, cpu_b = time.perf_counter() - t0, time.process_time() - c0
    assert [r["steps"] for r in batched] == [int(r.steps[-1]) for r in loop]
    out["batched"] = {"seconds": t_b, "cpu_seconds": cpu_b, "runs_per_s": args.runs / t_b}
    print(f"  batched kernel (prange):     {t_b:7.2f} s  {args.runs / t_b:8.2f} runs/s  "
          f"(cpu {cpu_b:.2f} s = {cpu_b / steps * 1e9:.0f} ns/step)  x{t_loop / t_b:.2f} vs the loop")

    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    try:
        spec_warm = sw.build_spec(base={"d": 512, "eta": 1e-2, "steps": 100}, seeds=2)
        sw.run_sweep(spec_warm, tmp / "warm", scheduler=cluster.scheduler_address, chunk_size=1)
        spec = sw.build_spec(base={"d": 512, "eta": 1e-2, "alpha": args.alpha,
                                   "eta_E_ratio": args.eta_E_ratio,
                                   "max_flow_time": args.max_flow_time},
                             seeds=list(range(args.runs)))
        from distributed import Client

        with Client(cluster) as client:
            w0 = sum(client.run(_cpu_seconds).values())
            t0 = time.perf_counter()
            res = sw.run_sweep(spec, tmp / "timed", scheduler=cluster.scheduler_address)
            t_d = time.perf_counter() - t0
            cpu_d = sum(client.run(_cpu_seconds).values()) - w0
        assert res.complete
        out["dask_2_workers"] = {"seconds": t_d, "cpu_seconds_workers": cpu_d,
                                 "runs_per_s": args.runs / t_d}
        print(f"  dask, 2 workers (sweep):     {t_d:7.2f} s  {args.runs / t_d:8.2f} runs/s  "
              f"(workers' cpu {cpu_d:.2f} s = {cpu_d / steps * 1e9:.0f} ns/step)  "
              f"x{t_loop / t_d:.2f} vs the loop")
    finally:
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)

    if args.full:
        target = Path(tempfile.mkdtemp(prefix="sweep-full-")) / "sweep"
        cmd = ["theory-sim", "sweep", *SWEEP_ARGS, "--max-flow-time", f"{args.max_flow_time:g}",
               "--out", str(target), "--quiet"]
        print(f"  full sweep: {shlex.join(cmd)}  (load {_load()})")
        exe = Path(sys.executable).with_name("theory-sim")
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), *cmd[1:]], capture_output=True, text=True)
        t_full = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_full = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        print("   ", proc.stdout.strip().replace("\n", "\n    "))
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        out["full_sweep"] = {"command": shlex.join(cmd), "seconds": t_full, "runs": 3200,
                             "cpu_seconds": cpu_full, "load_after": _load()}
        print(f"  10 x 10 x 32 sweep: {t_full:.1f} s wall ({3200 / t_full:.1f} runs/s), "
              f"{cpu_full:.0f} cpu-s (all processes; load {_load()}); table in {target}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
