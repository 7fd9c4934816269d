"""``theory-sim run``: one simulation, a summary on stdout, results on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .. import analysis
from ..driver import Simulation
from ..io import CHECKPOINT, SUMMARY, TRAJECTORY, RunFileError, load_checkpoint, save_checkpoint, save_run
from . import EXIT_FAILED, EXIT_INTERRUPTED, UsageError
from .options import add_model_args, add_train_args, model_from_args, train_from_args
from .output import StagedDir, default_run_dir, staging_path
from .progress import ProgressBar
from .signals import GracefulStop


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="simulate one training run",
                       description="Simulate one training run of the Wen & Li model and summarise it.")
    add_model_args(p)
    add_train_args(p)
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="run directory (default runs/<time>-<engine>-seed<seed>)")
    g.add_argument("--force", action="store_true", help="replace an existing --out directory")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="save the full state every N steps (NAME.partial/checkpoint.npz while running)")
    g.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the interrupted run in DIR with its stored configuration "
                        "(model and training options are then ignored)")
    p.set_defaults(func=cmd_run)


def run_summary(run) -> dict:
    """What summary.json holds: configuration, phase times, final state (0-based indices)."""
    threshold = float(run.config["train"]["align_threshold"])
    pt = analysis.phase_times(run, threshold)
    eta = run.eta
    times = {k: v for k, v in pt.as_dict().items() if k.startswith("T")}
    return {
        "config": run.config,
        "status": run.status,
        "partial": run.status == "interrupted",
        "message": run.message,
        "steps": int(run.steps[-1]),
        "flow_time": float(run.steps[-1] * eta),
        "elapsed_seconds": run.elapsed,
        "phase_times_steps": times,
        "phase_times_flow": {k: (None if v is None else v * eta) for k, v in times.items()},
        "leader": pt.leader,
        "follower": pt.follower,
        "final_alignment": np.abs(run.alignment[-1]).tolist(),
        "peak_offdiag_E": analysis.peak_offdiag(run).tolist(),
        "final_E": run.E[-1].tolist(),
        "final_head_distance": float(analysis.head_distance(run)[-1]),
        "final_loss": float(run.loss[-1]),
        "outcome": analysis.outcome(run, threshold),
        "indexing": "0-based (neuron j, feature l)",
    }


def format_summary(run, summary: dict, out) -> str:
    eta = run.eta
    lines = [f"theory-sim run: {run.message} [{run.elapsed:.2f} s]"]
    pt = summary["phase_times_steps"]
    lead, fol = summary["leader"], summary["follower"]
    label = {
        "T1": f"neuron {lead + 1} learns v1" if lead is not None else "some neuron learns v1",
        "T2": (f"peak |E[{fol + 1},{lead + 1}]|" if fol is not None else "peak of the head entry"),
        "T3": f"neuron {fol + 1} learns v2" if fol is not None else "follower learns v2",
        "T4": "|E - I|_F < 0.01 after T3",
    }
    lines.append("phase times (steps, flow time eta*steps; neurons numbered from 1):")
    for key in ("T1", "T2", "T3", "T4"):
        v = pt[key]
        when = "not reached" if v is None else f"{v:>12d}  t = {v * eta:.6g}"
        lines.append(f"  {key}  {label[key]:<28s} {when}")
    c = np.abs(run.alignment[-1])
    m, L = c.shape
    lines.append("final alignment |c_jl| = |<w_j, v_l>| / |w_j|:")
    lines.append("        " + "".join(f"{'v' + str(l + 1):>8s}" for l in range(L)))
    for j in range(m):
        lines.append(f"  w{j + 1:<4d}" + "".join(f"{c[j, l]:8.3f}" for l in range(L)))
    peak = np.asarray(summary["peak_offdiag_E"])
    entries = [f"E[{j + 1},{r + 1}] = {peak[j, r]:.4g}" for j in range(m) for r in range(m) if j != r]
    if entries:
        lines.append("peak |E_jr| off the diagonal: " + ", ".join(entries[:12])
                     + (" ..." if len(entries) > 12 else ""))
    lines.append(f"final |E - I|_F = {summary['final_head_distance']:.4g}; "
                 f"final loss = {summary['final_loss']:.6g}; outcome: {summary['outcome']}")
    if out is not None:
        lines.append(f"results: {out}/ ({TRAJECTORY}, {SUMMARY})")
    return "\n".join(lines)


def _open_resume(target: Path):
    """The checkpoint of an interrupted run: in NAME.partial (killed) or NAME (stopped)."""
    for where in (staging_path(target), target):
        if (where / CHECKPOINT).exists():
            try:
                return Simulation.from_checkpoint(load_checkpoint(where / CHECKPOINT))
            except (RunFileError, ValueError) as exc:
                raise UsageError(f"--resume {target}: {exc}") from None
    raise UsageError(f"--resume {target}: no {CHECKPOINT} there or in {staging_path(target)}")


def cmd_run(args) -> int:
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be an integer >= 1 (got {args.checkpoint_every})")
    if args.resume is not None:
        target = Path(args.resume)
        sim = _open_resume(target)
        staged = StagedDir(target, resume=True)
    else:
        model = model_from_args(args)
        train = train_from_args(args)
        target = args.out if args.out is not None else default_run_dir("runs", train.engine, train.seed)
        sim = Simulation(model, train)  # may refuse the inputs: before anything is created on disk
        staged = StagedDir(target, force=args.force)
    bar = ProgressBar("run", enabled=not args.quiet)

    def progress(step, total, info):
        text = f"step {step:.3g}"
        if "alignment" in info:
            best = info["alignment"].max(axis=1)
            text += " max|c_j| " + " ".join(f"{b:.2f}" for b in best[:4])
        bar(step, total, text, final=bool(info.get("done")))

    def checkpoint(state):
        save_checkpoint(state, staged.path / CHECKPOINT)

    with GracefulStop() as stop:
        run = sim.run(progress=progress, should_stop=stop, checkpoint_every=args.checkpoint_every,
                      on_checkpoint=checkpoint)
        summary = run_summary(run)
        if run.status == "interrupted":
            save_checkpoint(sim.checkpoint(), staged.path / CHECKPOINT)
        save_run(run, staged.path, summary=summary)
        if run.status != "interrupted":
            (staged.path / CHECKPOINT).unlink(missing_ok=True)
        out = staged.publish()
    print(format_summary(run, summary, out))
    sys.stdout.flush()
    if run.status == "diverged":
        print(f"theory-sim: error: {run.message}", file=sys.stderr)
        return EXIT_FAILED
    if run.status == "interrupted":
        print(f"theory-sim: {run.message} ({stop.requested or 'SIGINT'}); written to {out}; "
              f"continue with: theory-sim run --resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
