"""``theory-sim run``: one simulation, a summary on stdout, results on disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .. import Simulation, analysis
from ..core._jit import STATUS_CONVERGED
from ..engines import ENGINES
from ..io import CHECKPOINT, SUMMARY, TRAJECTORY, RunFileError, load_checkpoint, save_checkpoint, save_run
from ..regime import incomplete_reasons, regime_warnings
from . import EXIT_FAILED, UsageError, WriteFailed, warn
from .doctor import COMPILE_SECONDS, cache_problem, engine_cache_state
from .options import add_model_args, add_train_args, model_from_args, train_from_args
from .output import (
    EXIT_WRITE_FAILED,
    OutputError,
    StagedDir,
    checked_target,
    default_run_dir,
    refuse_if_in_use,
    shown,
    staging_path,
)
from .progress import RunProgress
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
                        "(--steps and --max-flow-time may change; other options must match)")
    p.set_defaults(func=cmd_run)
    _track_given(p, MODEL_OPTIONS + TRAIN_OPTIONS)


def _empty_summary(run) -> dict:
    """The summary of a run that recorded no point (it diverged at its first step)."""
    times = dict.fromkeys(("T1", "T2", "T3", "T4"))
    return {"config": run.config, "status": run.status, "partial": run.status == "interrupted",
            "message": run.message, "steps": 0, "flow_time": 0.0, "elapsed_seconds": run.elapsed,
            "phase_times_steps": times, "phase_times_flow": dict(times), "leader": None, "follower": None,
            "final_alignment": None, "peak_offdiag_E": None, "final_E": None, "final_head_distance": None,
            "final_loss": None, "outcome": "incomplete",
            "incomplete_reasons": [run.message or "no step was recorded"],
            "indexing": "0-based (neuron j, feature l)"}


def run_summary(run) -> dict:
    """What summary.json holds: configuration, phase times, final state (0-based indices)."""
    if run.n_points == 0:
        return _empty_summary(run)
    threshold = float(run.config["train"]["align_threshold"])
    pt = analysis.phase_times(run, threshold)
    times = {k: getattr(pt, k) for k in ("T1", "T2", "T3", "T4")}
    out = {
        "config": run.config,
        "status": run.status,
        "partial": run.status == "interrupted",
        "message": run.message,
        "steps": int(run.steps[-1]),
        "flow_time": float(run.flow_time[-1]),
        "elapsed_seconds": run.elapsed,
        "phase_times_steps": times,
        "phase_times_flow": pt.flow_times(),
        "leader": pt.leader,
        "follower": pt.follower,
        "final_alignment": np.abs(run.alignment[-1]).tolist(),
        "peak_offdiag_E": analysis.peak_offdiag(run).tolist(),
        "final_E": run.E[-1].tolist(),
        "final_head_distance": float(analysis.head_distance(run)[-1]),
        "final_loss": float(run.loss[-1]),
        # a flow run stopped as vanishing says so (as simulate_many and the sweep table)
        "outcome": analysis.outcome(run, threshold, vanishing=run.status == "vanishing"),
        "incomplete_reasons": incomplete_reasons(run, threshold),
        "indexing": "0-based (neuron j, feature l)",
    }
    if run.stats is not None:  # the flow engine: steps are nominal, round(flow time / eta)
        out["solver"] = dict(run.stats)
        out["steps_note"] = "nominal: round(flow_time / eta); the flow engine takes adaptive steps"
    return out


def _seconds(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1.0 else f"{s:.2f} s"


def format_summary(run, summary: dict, out, *, compiled: bool = False) -> str:
    note = ", including the first compile" if compiled else ""
    lines = [f"theory-sim run: {run.message} [{_seconds(run.elapsed)}{note}]"]
    if run.n_points == 0:
        lines.append("no point was recorded; outcome: incomplete")
        if out is not None:
            lines.append(f"results: {out}/ ({TRAJECTORY}, {SUMMARY})")
        return "\n".join(lines)
    pt, ptf = summary["phase_times_steps"], summary["phase_times_flow"]
    continuous = "solver" in summary
    lead, fol = summary["leader"], summary["follower"]
    label = {
        "T1": f"neuron {lead + 1} learns v1" if lead is not None else "some neuron learns v1",
        "T2": (f"peak |E[{fol + 1},{lead + 1}]|" if fol is not None else "peak of the head entry"),
        "T3": f"neuron {fol + 1} learns v2" if fol is not None else "follower learns v2",
        "T4": "|E - I|_F < 0.01 after T3",
    }
    if continuous:
        lines.append(f"phase times (flow time, located on the solver's dense output; in steps of "
                     f"eta = {run.eta:g}: t / eta; neurons numbered from 1):")
    else:
        lines.append("phase times (steps, flow time eta*steps; neurons numbered from 1):")
    for key in ("T1", "T2", "T3", "T4"):
        v, t = pt[key], ptf[key]
        if v is None:
            when = "not reached"
        elif continuous:
            when = f"t = {t:<12.7g} ~ step {v}"
        else:
            when = f"{v:>12d}  t = {t:.6g}"
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
    if continuous:
        s = summary["solver"]
        lines.append(f"solver: {s['n_rhs']} right-hand-side evaluations, {s['accepted_steps']} accepted "
                     f"steps ({s['stiff_steps']} stiff), {s['rejected_steps']} rejected, "
                     f"{s['switches']} method switches")
    for reason in summary.get("incomplete_reasons", []):
        lines.append(f"  incomplete: {reason}")
    if out is not None:
        lines.append(f"results: {out}/ ({TRAJECTORY}, {SUMMARY})")
    return "\n".join(lines)


MODEL_OPTIONS = ("d", "P", "k", "alpha", "pi", "sigma", "m", "features", "feature_seed", "split")
TRAIN_OPTIONS = ("eta", "eta_E", "head", "engine", "batch", "steps", "seed", "record", "tol",
                 "align_threshold", "max_flow_time")
RESUME_MAY_CHANGE = ("steps", "max_flow_time")
"""Options a resumed run applies (its budget); every other model or training option is fixed."""


def _track_given(parser, dests) -> None:
    """Record in ``args._given`` which of ``dests`` the user typed (a default is not typed)."""
    for action in parser._actions:
        if action.dest not in dests:
            continue
        base = type(action)

        def __call__(self, parser, namespace, values, option_string=None, _base=base):
            _base.__call__(self, parser, namespace, values, option_string)
            given = getattr(namespace, "_given", None) or set()
            namespace._given = given | {self.dest}

        action.__class__ = type(f"Given{base.__name__}", (base,), {"__call__": __call__})


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-") if dest != "eta_E" else "--eta-E"


def _finished_message(target: Path) -> str | None:
    """``status: message`` of a finished run stored in ``target`` (None if there is none)."""
    if not (target / SUMMARY).is_file():  # missing, or a FIFO that would block the read
        return None
    try:
        summary = json.loads((target / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("status") not in ("converged", "max_steps", "diverged",
                                                                      "vanished"):
        return None
    return str(summary.get("message") or summary["status"])


def _load_resume_state(target: Path, shown: str) -> dict:
    """The checkpoint of an interrupted run: in NAME.partial (killed) or NAME (stopped)."""
    partial = staging_path(target)
    if not target.exists() and not partial.exists():
        raise UsageError(f"--resume {shown}: no such directory (nor {partial.name}), "
                         f"so no {CHECKPOINT} to continue")
    for where in (partial, target):
        if (where / CHECKPOINT).exists():
            try:
                state = load_checkpoint(where / CHECKPOINT)
                Simulation.from_checkpoint(state)  # validates it
                return state
            except (RunFileError, ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"--resume {shown}: {exc}") from None
    raise UsageError(f"--resume {shown}: no {CHECKPOINT} there or in {partial}")


def _resume_conflicts(args, config: dict) -> tuple[list[str], dict]:
    """(conflicting options as ``--d 64 (stored: 512)``, changes to apply ``{dest: (old, new)}``)."""
    given = getattr(args, "_given", None) or set()
    model_given = given & set(MODEL_OPTIONS)
    train_given = given & set(TRAIN_OPTIONS)
    typed = {}
    if model_given:
        typed.update(model_from_args(args).to_dict())
    if train_given:
        typed.update(train_from_args(args).to_dict())
    conflicts, changes = [], {}
    for dest in sorted(model_given | train_given, key=(MODEL_OPTIONS + TRAIN_OPTIONS).index):
        stored = config["model" if dest in MODEL_OPTIONS else "train"].get(dest)
        new = typed[dest]
        if dest == "eta_E" and args.eta_E is None:
            continue
        same = list(new) == list(stored) if isinstance(new, list | tuple) else new == stored
        if same:
            continue
        if dest in RESUME_MAY_CHANGE:
            changes[dest] = (stored, new)
        else:
            shown = ",".join(f"{x:g}" for x in new) if isinstance(new, list | tuple) else new
            old = ",".join(f"{x:g}" for x in stored) if isinstance(stored, list | tuple) else stored
            conflicts.append(f"{_flag(dest)} {shown} (stored: {old})")
    return conflicts, changes


def _open_resume(args):
    """``(Simulation, StagedDir, notes)`` for ``--resume DIR``, or a one-line UsageError."""
    shown = args.resume
    target = checked_target(shown, "--resume")
    if target.is_symlink():  # its staging directory sits next to the run the link points to
        target = target.resolve()
    refuse_if_in_use(target, "--resume", shown)
    if args.out is not None:
        raise UsageError(f"--resume {shown} continues the run in {shown}; leave out --out {args.out}")
    if not (target / CHECKPOINT).exists() and not (staging_path(target) / CHECKPOINT).exists():
        finished = _finished_message(target)
        if finished is not None:
            raise UsageError(f"--resume {shown}: that run is already finished ({finished}); a finished "
                             f"run keeps no {CHECKPOINT}: start a new one with --out to go further")
    state = _load_resume_state(target, shown)
    config = state["meta"]["config"]
    conflicts, changes = _resume_conflicts(args, config)
    if conflicts:
        verb = "conflicts" if len(conflicts) == 1 else "conflict"
        raise UsageError(f"--resume {shown}: " + ", ".join(conflicts) + f" {verb} with the stored "
                         "configuration; a resumed run keeps its options (only "
                         + " and ".join(_flag(d) for d in RESUME_MAY_CHANGE) + " may change)")
    done = int(state["rec_state"][0])
    notes = []
    for dest, (old, new) in changes.items():
        config["train"][dest] = new
        notes.append(f"{_flag(dest)} changed from {old} to {new}")
    try:
        sim = Simulation.from_checkpoint(state)
    except ValueError as exc:
        raise UsageError(f"--resume {shown}: {exc}") from None
    if sim.train.max_steps < done and not sim.continuous:
        raise UsageError(f"--resume {shown}: the new budget ({sim.train.max_steps} steps) is below the "
                         f"{done} steps already done")
    staged = StagedDir(shown, resume=True, flag="--resume")
    note = f"resuming {shown} at step {done} (flow time {sim.flow_time:.6g})"
    return sim, staged, note + ("; " + "; ".join(notes) if notes else "")


SLOW_SETUP_SECONDS = 20.0
"""A run whose set-up (before its first step) is estimated to take longer than this is announced."""


def _check_setup_cost(model, train) -> None:
    """Estimate the memory and time a materialising engine needs before its first step: refuse
    beyond the machine's available memory, warn when slow (the bar cannot move meanwhile)."""
    from ..engines.population import check_machine_memory

    cost = getattr(ENGINES[train.engine], "setup_cost", None)
    if cost is None:
        return
    need, seconds = cost(model, train)
    check_machine_memory(train.engine, model, train, need)
    if seconds > SLOW_SETUP_SECONDS:
        warn(f"at d={model.d} the {train.engine} engine materialises W(0) and the features: about "
             f"{need / 1e9:.2g} GB and {seconds:.0f} s before its first step (the bar waits at 0 %); "
             f"--engine flow --init reduced runs any d at O(m^2) cost")


def _bar(train, args) -> RunProgress:
    engine = train.engine
    problem = cache_problem()
    if problem:
        warn(problem)
    return RunProgress(engine=engine, eta=train.eta, max_steps=train.max_steps,
                       threshold=train.align_threshold, tol=train.tol,
                       compiling=engine_cache_state(engine) == "cold",
                       compile_seconds=COMPILE_SECONDS.get(engine), enabled=not args.quiet)


def cmd_run(args) -> int:
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be an integer >= 1 (got {args.checkpoint_every})")
    if args.resume is not None:
        sim, staged, note = _open_resume(args)
        print(f"theory-sim: {shown(note)}", file=sys.stderr)
    else:
        model = model_from_args(args)
        train = train_from_args(args)
        target = args.out if args.out is not None else default_run_dir("runs", train.engine, train.seed)
        _check_setup_cost(model, train)
        # the bar first: building a flow run compiles its kernels, and the bar says so
        bar = _bar(train, args)
        try:
            sim = Simulation(model, train)  # may refuse the inputs: before anything is created on disk
            staged = StagedDir(target, force=args.force)
        except BaseException:
            bar.close()  # its compile ticker
            raise
        for note in staged.notes:
            warn(note)
    train = sim.train
    if args.resume is not None:
        bar = _bar(train, args)
    if args.resume is None:
        # the flow engine takes no steps of size eta: the small-step bound does not apply to it
        for warning in regime_warnings(sim.model, train, check_step=not sim.continuous):
            warn(warning)

    def progress(step, total, info):
        if info.get("done"):
            info = info | {"converged": getattr(sim, "code", None) == STATUS_CONVERGED}
        bar(step, total, info)

    failed = []

    def checkpoint(state):
        try:
            save_checkpoint(state, staged.path / CHECKPOINT)
        except OSError as exc:  # a full disk must not end a run that may finish: go on, say it once
            if not failed:
                warn(f"cannot write the checkpoint in {staged.path} ({exc.strerror or exc}); the run "
                     f"goes on, the last checkpoint written is kept")
            failed.append(exc)

    with GracefulStop() as stop:
        try:
            run = sim.run(progress=progress, should_stop=stop, checkpoint_every=args.checkpoint_every,
                          on_checkpoint=checkpoint)
        finally:
            bar.close()
        summary = run_summary(run)
        try:
            if run.status == "interrupted":
                save_checkpoint(sim.checkpoint(), staged.path / CHECKPOINT)
            save_run(run, staged.path, summary=summary)
            if run.status != "interrupted":
                (staged.path / CHECKPOINT).unlink(missing_ok=True)
            staged.publish()
        except OSError as exc:  # disk full, permissions changed mid-run: the old result stays
            where = exc if isinstance(exc, OutputError) else (
                f"could not write the results to {staged.path} ({exc.strerror or exc})")
            print(f"theory-sim: error: {shown(where)}", file=sys.stderr)
            return EXIT_WRITE_FAILED
    out = shown(staged.shown.rstrip("/") or staged.shown)
    # a continuous engine compiles before its clock starts (engines/flow.py): its time excludes it
    compiled_in_clock = bar.compiling and not ENGINES[run.config["train"]["engine"]].continuous
    try:
        print(format_summary(run, summary, out, compiled=compiled_in_clock))
        sys.stdout.flush()
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise WriteFailed(f"cannot print the summary ({exc.strerror or exc}); the results are "
                          f"complete in {out}/") from None
    if run.status == "diverged":
        print(f"theory-sim: error: {run.message}", file=sys.stderr)
        return EXIT_FAILED
    if run.status == "interrupted":
        print(f"theory-sim: {run.message} ({stop.requested or 'SIGINT'}); written to {out}; "
              f"continue with: theory-sim run --resume {out}", file=sys.stderr)
        return stop.exit_status  # 130 after Ctrl-C, 143 after SIGTERM
    return 0
