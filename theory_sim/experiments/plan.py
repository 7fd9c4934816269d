"""What the figures simulate: one :class:`Plan`, at full size (``FULL``) or small (``QUICK``)."""

from __future__ import annotations

from dataclasses import dataclass

from .flow_runs import FLOW_RUN_UNITS


@dataclass(frozen=True)
class Plan:
    """Everything the figures simulate. ``FULL`` and ``QUICK`` differ only in sizes."""

    name: str
    # figs 1-3: one run at the default parameters (seed 1), head trainable and frozen
    story_eta: float = 1e-2
    story_cap: float = 3e4
    story_record: int = 10000
    # fig 4: T1 against d (gradient flow, reduced initial law, each run stopped at T1)
    d_values: tuple = tuple(10**k for k in range(2, 11))
    d_seeds: tuple = tuple(range(1, 33))
    d_fit_min: int = 10**6
    """T1 = a d^2 + b: the exponent is fitted on the top four decades, where a d^2 >> b."""
    # T1 against eta (discrete population engine, flow-time caps raised until T1 is reached)
    eta_values: tuple = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
    eta_seeds: tuple = tuple(range(1, 9))
    # |E_fl(T2)| against eta_E/eta (gradient flow, every run to convergence)
    ratio_values: tuple = (0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    ratio_seeds: tuple = tuple(range(1, 33))
    ratio_fit_min: float = 0.01
    """Below this the follower often learns v_2 before the head entry peaks (docs/paper.md, appendix)."""
    # fig 5 (flow engine, every run to convergence or its flow-time cap)
    alpha1: float = 6.0
    alpha_ratios: tuple = (1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
    eta_ratios: tuple = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    grid_seeds: tuple = tuple(range(1, 33))
    default_seeds: tuple = tuple(range(1, 257))
    # fig 6 (sgd engine: small d so that the whole story fits in a short flow time)
    sgd_d: int = 32
    sgd_w0_seed: int = 2
    sgd_batches: tuple = (256, 1024, 4096)
    sgd_seeds: tuple = (101, 102, 103)
    sgd_eta: float = 0.04
    sgd_flow: float = 120.0
    # fig 7
    many_alpha: tuple = (6.0, 4.5, 3.5, 3.0)
    many_m: int = 8
    many_seed: int = 1
    many_eta: float = 0.05
    many_cap: float = 2e4
    # fig 8: the paper's regime (flow engine, reduced initial law; docs/paper.md, appendix)
    regime_d_values: tuple = (10**3, 10**4, 10**5, 10**6, 10**7, 10**8, 10**9, 10**10)
    regime_seeds: tuple = tuple(range(1, 257))
    # fig 9 (mechanism ablations, docs/model.md section 12)
    ablation_seeds: tuple = tuple(range(1, 65))
    ablation_eta: float = 0.1
    ablation_cap: float = 3e4
    ablation_eta_none: float = 1e-3
    ablation_cap_none: float = 2e3
    ablation_taus: tuple = (0.9, 0.99)


FULL = Plan(name="full")
QUICK = Plan(
    name="quick",
    story_record=3000,
    d_values=(10**2, 10**4, 10**6, 10**8, 10**10), d_seeds=tuple(range(1, 9)), d_fit_min=10**6,
    eta_values=(3e-3, 3e-2, 3e-1), eta_seeds=(1, 2, 3),
    ratio_values=(0.001, 0.01, 0.1, 0.5), ratio_seeds=(1, 2, 3, 5),
    alpha_ratios=(1.5, 2.0, 3.0, 8.0), eta_ratios=(0.001, 0.01, 0.1, 1.0), grid_seeds=(1, 2, 3, 4),
    default_seeds=tuple(range(1, 17)),
    sgd_batches=(128, 512), sgd_seeds=(101, 102), sgd_flow=100.0,
    many_cap=4e3,
    regime_d_values=(10**3, 10**5, 10**7, 10**9), regime_seeds=tuple(range(1, 17)),
    ablation_seeds=(1, 2, 3), ablation_cap=1e4,
)


def cost(plan: Plan, num: int) -> float:
    """Rough cost of figure ``num`` in progress units (a unit ~ one short population run);
    each experiment reports the same units to its ``progress`` callback."""
    if num == 4:
        return (len(plan.eta_values) * len(plan.eta_seeds)
                + (len(plan.d_values) * len(plan.d_seeds) + len(plan.ratio_values) * len(plan.ratio_seeds))
                * FLOW_RUN_UNITS)
    if num == 5:
        return (len(plan.alpha_ratios) * (len(plan.eta_ratios) + 1) * len(plan.grid_seeds)
                + 2 * len(plan.default_seeds)) * FLOW_RUN_UNITS
    if num == 6:
        return 1 + sum(b / 256 for b in plan.sgd_batches) * len(plan.sgd_seeds)
    if num == 8:
        return 2 * len(plan.regime_d_values) * len(plan.regime_seeds) * FLOW_RUN_UNITS
    if num == 9:
        return (8 + len(plan.ablation_taus)) * len(plan.ablation_seeds) * 0.1
    return {1: 4, 2: 0, 3: 0, 7: 8}[num]
