"""Command-line options of the commands that build ModelParams / TrainParams, generated
from the one parameter registry (``theory_sim.params.PARAMETERS``): a new parameter
there is a new option here."""

from __future__ import annotations

import argparse

from ..engines import ENGINES
from ..params import PARAMETERS, ModelParams, TrainParams

GROUPS = {"model": "model (docs/model.md sections 1-3)", "train": "training (docs/model.md section 4)"}


def float_list(text: str) -> tuple:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, e.g. 6,3 (got {text!r})") from None
    return values


def _add_args(p: argparse.ArgumentParser, owner: str) -> None:
    g = p.add_argument_group(GROUPS[owner])
    for par in PARAMETERS:
        if par.owner != owner:
            continue
        default = par.default
        help_ = par.help
        if par.name == "engine":  # each engine describes itself in the registry
            help_ = "; ".join(f"{name}: {engine.help}" for name, engine in ENGINES.items())
        if default is not None and "default" not in help_:
            shown = ",".join(f"{x:g}" for x in default) if par.kind == "floats" else \
                f"{default:g}" if isinstance(default, float) else default
            help_ += f" (default {shown})"
        kind = float_list if par.kind == "floats" else par.kind
        g.add_argument(par.flag, dest=par.name, type=kind, default=default, choices=par.choice_list,
                       help=help_)


def add_model_args(p: argparse.ArgumentParser) -> None:
    _add_args(p, "model")


def add_train_args(p: argparse.ArgumentParser) -> None:
    _add_args(p, "train")


def _values(args, owner: str) -> dict:
    return {par.name: getattr(args, par.name) for par in PARAMETERS if par.owner == owner}


def model_from_args(args) -> ModelParams:
    return ModelParams(**_values(args, "model"))


def train_from_args(args) -> TrainParams:
    return TrainParams(**_values(args, "train"))
