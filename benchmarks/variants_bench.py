#!/usr/bin/env python
"""Cost of the mechanism ablations (docs/model.md section 12) against the paper's model.

Two workloads, each measured for the default variant (``bn``, stop-gradient ``on``, online
target) and every other variant in the same run, warm-up (compile) first:

* population: a tight numba loop of ``core.variants.population_step_variant`` +
  ``apply_step_variant`` (``core.variants.population_run_variant``) on the reduced
  coordinates of the default model (d = 512, m = L = 2, seed 1). The default variant runs
  ``population_step`` itself (the engine's step), so its row is the engine's per-step cost;
* SGD: one mini-batch gradient (batch 256, P = 16, d = 512), materialised patches (the
  engine's ``core.sgd.sgd_gradient`` for the default row, ``core.sgd.sgd_gradient_variant``
  for the others: it also keeps view 2's noise where the backward pass needs it and, with an
  EMA target, projects each patch on both weight sets) and exact in distribution
  (``sgd_fast_gradient`` against ``sgd_fast_gradient_variant``, whose basis spans W and Wbar).

* engines: whole ``theory_sim.simulate`` runs through each engine's ``advance`` loop
  (population: ``population_advance`` for the default row, ``population_advance_variant``
  otherwise, recording, events and the stop rule included; sgd / sgd-fast:
  ``sgd_advance`` / ``sgd_advance_variant``, with the EMA target update), a fixed step budget
  at ``eta = ETA_ENGINE``, time per step from ``Run.elapsed``.

Each row: the median over repeats of the per-step time, its min-max spread, and the ratio
to the default row. Timings on a shared machine are only as good as its idleness: the
load average is printed.

    python benchmarks/variants_bench.py            # about a minute
    python benchmarks/variants_bench.py --quick    # fewer steps and repeats
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import theory_sim as ts  # noqa: E402
from theory_sim import objective as ob  # noqa: E402
from theory_sim.core import sgd as csgd  # noqa: E402
from theory_sim.core import variants as cv  # noqa: E402
from theory_sim.model import head_mask, initial_weights, model_constants, reduced_coordinates  # noqa: E402

TAU = 0.99
ETA = 1e-6
"""Small enough that no variant leaves the neighbourhood of W(0) during the timed steps
(the unnormalised ones would otherwise blow up or vanish and stop the loop early)."""


def variants():
    for norm, stopgrad, target in itertools.product(("bn", "none"), ("on", "off"), ("online", "ema")):
        yield f"{norm}/{stopgrad}/{target}", (norm, stopgrad, target)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def population_rows(model, steps, repeats):
    V = ts.feature_vectors(model)
    W0 = initial_weights(model, 1)
    _, B0, Vr = reduced_coordinates(V, W0)
    E0 = np.eye(model.m)
    mask = head_mask("offdiag", model.m)
    consts = model_constants(model)
    rates = (ETA, ETA / 10)
    rows = {}
    for name, (norm, stopgrad, target) in variants():
        variant = ob.variant_tuple(norm, stopgrad, target, TAU if target == "ema" else 0.0)
        losses = np.empty(steps)

        def run(variant=variant, losses=losses, name=name):
            B, Bbar, E = B0.copy(), B0.copy(), E0.copy()
            n = cv.population_run_variant(B, Bbar, E, Vr, mask, consts, rates, variant, steps, losses)
            if n != steps:
                raise RuntimeError(f"{name}: stopped after {n} of {steps} steps")

        t0 = time.perf_counter()
        B, Bbar, E = B0.copy(), B0.copy(), E0.copy()
        cv.population_run_variant(B, Bbar, E, Vr, mask, consts, rates, variant, 1, losses)
        warm = time.perf_counter() - t0
        rows[name] = (warm, [t / steps for t in timed(run, repeats)])
    return rows


def sgd_rows(model, batch, repeats, fast):
    V = np.ascontiguousarray(ts.feature_vectors(model))
    W = initial_weights(model, 1)
    W = W + 0.3 * np.ones((model.m, model.L)) @ V.T  # away from the flat start: realistic magnitudes
    E = np.eye(model.m)
    gW, gE = np.empty_like(W), np.empty_like(E)
    N, P, m = batch, model.P, model.m
    data = ob.sgd_data(model)
    rows = {}
    for name, (norm, stopgrad, target) in variants():
        variant = ob.variant_tuple(norm, stopgrad, target, TAU if target == "ema" else 0.0)
        Wb = W if target == "online" else W + 0.01 * np.ones_like(W)
        work = ob.sgd_work(model, batch, fast=fast)
        if variant == cv.DEFAULT_VARIANT:  # the engines' kernels
            kernel = csgd.sgd_fast_gradient if fast else csgd.sgd_gradient

            def call(step, work=work, kernel=kernel):
                kernel(W, E, V, data, 7, step, gW, gE, work)
        else:
            if fast:
                work = (np.empty((N, P, 2 * m)),) + work[1:]
            kernel = csgd.sgd_fast_gradient_variant if fast else csgd.sgd_gradient_variant
            extra = (np.empty((N, P, m)), np.empty((N, m)), np.empty((N, m)))

            def call(step, work=work, kernel=kernel, extra=extra, Wb=Wb, variant=variant):
                kernel(W, Wb, E, V, data, 7, step, variant, False, gW, gE, work, extra)

        t0 = time.perf_counter()
        call(0)
        warm = time.perf_counter() - t0
        counter = itertools.count(1)
        per = 10

        def run(call=call, counter=counter, per=per):
            for _ in range(per):
                call(next(counter))

        rows[name] = (warm, [t / per for t in timed(run, repeats)])
    return rows


ETA_ENGINE = 1e-5
"""Engine runs: small enough that no run vanishes, diverges or converges in the budget."""


def engine_rows(model, engine, steps, repeats, batch=256):
    rows = {}
    for name, (norm, stopgrad, target) in variants():
        kw = {"norm": norm, "stopgrad": stopgrad, "target": target, "tau": TAU if target == "ema" else 0.0}
        tp = ts.TrainParams(engine=engine, eta=ETA_ENGINE, steps=steps, batch=batch, seed=1, **kw)
        t0 = time.perf_counter()
        ts.simulate(model, ts.TrainParams(engine=engine, eta=ETA_ENGINE, steps=2, batch=batch, seed=1, **kw))
        warm = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            run = ts.simulate(model, tp)
            if run.status != "max_steps":
                raise RuntimeError(f"{engine} {name}: {run.message}")
            times.append(run.elapsed / steps)
        rows[name] = (warm, times)
    return rows


def table(title, rows, unit, scale):
    base = statistics.median(rows["bn/on/online"][1])
    print(f"\n{title}")
    print(f"{'variant':<18}{'warm-up s':>10}{'median ' + unit:>16}{'min-max ' + unit:>22}{'ratio':>8}")
    for name, (warm, times) in rows.items():
        med = statistics.median(times)
        spread = f"{min(times) * scale:.3f}-{max(times) * scale:.3f}"
        print(f"{name:<18}{warm:>10.2f}{med * scale:>16.3f}{spread:>22}{med / base:>8.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    args = parser.parse_args(argv)
    steps, repeats, srep = (20_000, 3, 3) if args.quick else (200_000, 5, 5)
    model = ts.ModelParams()
    print(f"default model {model}; tau = {TAU}; load average {os.getloadavg()}")
    table(f"population step (d = {model.d}, {steps} steps per repeat, {repeats} repeats)",
          population_rows(model, steps, repeats), "us/step", 1e6)
    for fast in (False, True):
        kind = "sgd-fast" if fast else "sgd, materialised"
        table(f"SGD gradient ({kind}, batch 256, P = {model.P}, d = {model.d}, 10 per repeat)",
              sgd_rows(model, 256, srep, fast), "ms/grad", 1e3)
    esteps, ssteps = (20_000, 10) if args.quick else (200_000, 40)
    table(f"population engine (simulate, {esteps} steps, eta = {ETA_ENGINE:g}, {repeats} repeats)",
          engine_rows(model, "population", esteps, repeats), "us/step", 1e6)
    for engine in ("sgd", "sgd-fast"):
        table(f"{engine} engine (simulate, batch 256, {ssteps} steps, {srep} repeats)",
              engine_rows(model, engine, ssteps, srep), "ms/step", 1e3)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
