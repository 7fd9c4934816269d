"""Fig. 9: the mechanism ablations (docs/model.md section 12): the outcome fractions of the
2 x 2 x 2 table head (``offdiag``/``frozen``) x stop-gradient x BN and of the EMA target at
two rates, over many seeds with the population engine at the default model; and, for one
seed, ``|c_jl|`` and the head over time in each variant."""

from __future__ import annotations

from .. import plotting
from ..analysis import outcome
from ..driver import simulate
from ..params import ModelParams, TrainParams
from ..stats import wilson_interval
from ..status import OUTCOMES
from .plan import Plan
from .runs import Progress, no_progress

NAME = "fig9_ablations"
DATA_FORMAT = "json"


def variants(plan: Plan) -> list[dict]:
    """The cells: ``{"label", "head", "stopgrad", "norm", "target", "tau"}``, the paper's first."""
    cells = []
    for norm in ("bn", "none"):
        for stopgrad in ("on", "off"):
            for head in ("offdiag", "frozen"):
                cells.append({"head": head, "stopgrad": stopgrad, "norm": norm, "target": "online",
                              "tau": 0.0})
    for tau in plan.ablation_taus:
        cells.append({"head": "offdiag", "stopgrad": "on", "norm": "bn", "target": "ema", "tau": tau})
    for c in cells:
        c["label"] = (f"{c['head']}, sg {c['stopgrad']}, {'BN' if c['norm'] == 'bn' else 'no BN'}"
                      + (f", EMA {c['tau']:g}" if c["target"] == "ema" else ""))
    return cells


def train_of(plan: Plan, cell: dict, seed: int, record: int) -> TrainParams:
    """BN runs at ``ablation_eta``; without BN the degree-6 loss needs ``ablation_eta_none``."""
    bn = cell["norm"] == "bn"
    return TrainParams(eta=plan.ablation_eta if bn else plan.ablation_eta_none, head=cell["head"], seed=seed,
                       record=record, max_flow_time=plan.ablation_cap if bn else plan.ablation_cap_none,
                       norm=cell["norm"], stopgrad=cell["stopgrad"], target=cell["target"], tau=cell["tau"])


def ablation_table(plan: Plan, progress: Progress = no_progress) -> tuple[list[dict], dict]:
    """Per cell: outcome and status counts over ``plan.ablation_seeds`` with Wilson 95% intervals;
    and the run of ``plan.ablation_seeds[0]`` per cell (recorded densely) for the trajectories."""
    model = ModelParams()
    rows, examples = [], {}
    for cell in variants(plan):
        counts = dict.fromkeys(OUTCOMES, 0)
        statuses: dict[str, int] = {}
        for i, seed in enumerate(plan.ablation_seeds):
            run = simulate(model, train_of(plan, cell, seed, 400 if i == 0 else 50))
            counts[outcome(run, vanishing=True)] += 1
            statuses[run.status] = statuses.get(run.status, 0) + 1
            if i == 0:
                examples[cell["label"]] = run
            progress(0.1)
        n = len(plan.ablation_seeds)
        rows.append({**cell, "seeds": n, "counts": counts, "statuses": statuses,
                     "fractions": {k: v / n for k, v in counts.items()},
                     "wilson95": {k: list(wilson_interval(v, n)) for k, v in counts.items()}})
    return rows, examples


def make(plan: Plan, progress: Progress = no_progress):
    """``(figure, JSON-able data, facts)`` of fig 9."""
    rows, examples = ablation_table(plan, progress)
    n = len(plan.ablation_seeds)
    note = (f"population engine, default model (d = 512, P = 16, k = 4, alpha = (6, 3)), {n} seeds per "
            f"variant; BN: eta = {plan.ablation_eta:g}, cap {plan.ablation_cap:g}; no BN: "
            f"eta = {plan.ablation_eta_none:g}, cap {plan.ablation_cap_none:g} (flow time); "
            "bars: Wilson 95% intervals")
    fig = plotting.ablation_figure(rows, [examples[r["label"]] for r in rows], note=note)
    js = {"seeds_per_variant": n, "eta_bn": plan.ablation_eta, "eta_no_bn": plan.ablation_eta_none,
          "cap_bn": plan.ablation_cap, "cap_no_bn": plan.ablation_cap_none, "variants": rows,
          "example_seed": plan.ablation_seeds[0]}
    facts = {r["label"]: {"counts": r["counts"], "statuses": r["statuses"]} for r in rows}
    return fig, js, facts
