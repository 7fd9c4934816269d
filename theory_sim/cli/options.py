"""Command-line options shared by the commands that build ModelParams / TrainParams."""

from __future__ import annotations

import argparse

from ..params import ENGINES, FEATURES, HEADS, SPLITS, ModelParams, TrainParams


def float_list(text: str) -> tuple:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, e.g. 6,3 (got {text!r})") from None
    return values


def add_model_args(p: argparse.ArgumentParser) -> None:
    d = ModelParams()
    g = p.add_argument_group("model (MODEL.md sections 1-3)")
    g.add_argument("--d", type=int, default=d.d, help=f"patch dimension (default {d.d})")
    g.add_argument("--P", type=int, default=d.P, help=f"patches per sample (default {d.P})")
    g.add_argument("--k", type=int, default=d.k, help=f"feature patches per sample, 2..P (default {d.k})")
    g.add_argument("--alpha", type=float_list, default=d.alpha,
                   help="feature strengths, comma-separated (default 6,3)")
    g.add_argument("--pi", type=float_list, default=None,
                   help="feature probabilities, comma-separated (default uniform)")
    g.add_argument("--sigma", type=float, default=d.sigma, help=f"noise std (default {d.sigma})")
    g.add_argument("--m", type=int, default=d.m, help=f"neurons (default {d.m})")
    g.add_argument("--features", choices=FEATURES, default=d.features)
    g.add_argument("--feature-seed", type=int, default=0, help="seed of --features random")
    g.add_argument("--split", choices=SPLITS, default="bernoulli",
                   help="view split: each patch w.p. 1/2 (bernoulli) or exactly half")


def add_train_args(p: argparse.ArgumentParser) -> None:
    t = TrainParams()
    g = p.add_argument_group("training (MODEL.md section 4)")
    g.add_argument("--eta", type=float, default=t.eta, help=f"learning rate of W (default {t.eta:g})")
    g.add_argument("--eta-E", dest="eta_E", type=float, default=None,
                   help="learning rate of the head (default eta/10)")
    g.add_argument("--head", choices=HEADS, default=t.head,
                   help="offdiag: the paper's head; frozen: E = I; full: every entry trained")
    g.add_argument("--engine", choices=ENGINES, default=t.engine,
                   help="population: exact GD on the closed form; sgd: online mini-batch SGD")
    g.add_argument("--batch", type=int, default=t.batch, help=f"SGD batch size (default {t.batch})")
    g.add_argument("--steps", type=int, default=None,
                   help="number of steps (default: until converged, capped at max-flow-time/eta)")
    g.add_argument("--seed", type=int, default=t.seed, help="seed of W(0) and of the SGD samples")
    g.add_argument("--record", type=int, default=t.record, help="trajectory points kept")
    g.add_argument("--tol", type=float, default=t.tol, help=f"convergence speed (default {t.tol:g})")
    g.add_argument("--align-threshold", type=float, default=t.align_threshold,
                   help="|c_jl| that counts as learned (default 0.9)")
    g.add_argument("--max-flow-time", type=float, default=t.max_flow_time,
                   help=f"cap on eta*steps when --steps is not given (default {t.max_flow_time:g})")


def model_from_args(args) -> ModelParams:
    alpha = tuple(args.alpha)
    pi = args.pi if args.pi is not None else tuple(1.0 / len(alpha) for _ in alpha)
    return ModelParams(d=args.d, P=args.P, k=args.k, alpha=alpha, pi=tuple(pi), sigma=args.sigma,
                       m=args.m, features=args.features, feature_seed=args.feature_seed,
                       split=args.split)


def train_from_args(args) -> TrainParams:
    return TrainParams(eta=args.eta, eta_E=args.eta_E, head=args.head, engine=args.engine,
                       batch=args.batch, steps=args.steps, seed=args.seed, record=args.record,
                       tol=args.tol, align_threshold=args.align_threshold,
                       max_flow_time=args.max_flow_time)
