"""Reliability: exact resume, graceful interruption, hostile command lines."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import theory_sim as ts
from theory_sim.cli import main
from theory_sim.driver import Simulation
from theory_sim.io import CHECKPOINT, RunFileError, load_checkpoint, load_run, save_checkpoint

ENGINES = ["population", "sgd", "sgd-fast"]
SMALL = ts.ModelParams(d=16, P=6, k=2, alpha=(3.0, 2.0))

RUN_ARRAYS = ("steps", "alignment", "norms", "E", "loss", "rho", "gram", "W", "E_final")


def _assert_same_run(a, b):
    assert a.status == b.status
    for name in RUN_ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.events.keys() == b.events.keys()  # the phase events survive the checkpoint
    for name, value in a.events.items():
        np.testing.assert_array_equal(value, b.events[name], err_msg=f"events[{name}]")


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_from_any_checkpoint_is_bit_identical(engine, tmp_path):
    """Interrupting at several points and resuming (through the checkpoint file on disk)
    gives exactly the uninterrupted run: same arrays to the last bit."""
    train = ts.TrainParams(eta=0.05, steps=240, engine=engine, batch=16, record=40, seed=3)
    reference = ts.simulate(SMALL, train)
    states = []
    Simulation(SMALL, train).run(checkpoint_every=55, on_checkpoint=states.append)
    assert [int(s["rec_state"][0]) for s in states] == [55, 110, 165, 220]
    for i, state in enumerate(states):
        path = save_checkpoint(state, tmp_path / f"ck{i}.npz")
        run = Simulation.from_checkpoint(load_checkpoint(path)).run()
        _assert_same_run(run, reference)


def test_resume_of_a_converging_run_stops_at_the_same_step(tmp_path):
    train = ts.TrainParams(eta=0.05, seed=1, max_flow_time=3e3)
    reference = ts.simulate(SMALL, train)
    assert reference.status == "converged"
    states = []
    every = max(1, int(reference.steps[-1]) // 5)
    Simulation(SMALL, train).run(checkpoint_every=every, on_checkpoint=states.append)
    assert len(states) >= 4
    run = Simulation.from_checkpoint(states[len(states) // 2]).run()
    _assert_same_run(run, reference)


def test_load_checkpoint_rejects_garbage(tmp_path):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(RunFileError):
        load_checkpoint(bad)
    state = Simulation(SMALL, ts.TrainParams(steps=3)).checkpoint()
    state["meta"]["format_version"] = 999
    with pytest.raises(ValueError, match="version"):
        Simulation.from_checkpoint(state)


def _cli(argv, cwd):
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def _console_script():
    exe = Path(sys.executable).with_name("theory-sim")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "theory_sim.cli"]


LONG_RUN = ["run", "--d", "16", "--P", "6", "--k", "2", "--alpha", "3,2", "--eta", "1e-4",
            "--steps", "30000000", "--record", "50"]


def _start_and_wait_for_progress(argv, tmp_path):
    proc = subprocess.Popen(_console_script() + argv, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    line = ""
    while time.time() < deadline:  # the first progress line means the kernel is running
        line = proc.stderr.readline()
        if "step" in line or proc.poll() is not None:
            break
    assert "step" in line, f"no progress line from the run (got {line!r})"
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_consistent_partial_result_that_resumes(sig, tmp_path):
    out = tmp_path / "run"
    proc = _start_and_wait_for_progress(LONG_RUN + ["--out", str(out)], tmp_path)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr         # 143 after SIGTERM, 130 after Ctrl-C
    assert "Traceback" not in stderr
    assert "--resume" in stderr.strip().splitlines()[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is True and summary["status"] == "interrupted"
    partial = load_run(out)
    assert partial.status == "interrupted" and partial.steps[-1] < 30_000_000
    state = load_checkpoint(out / CHECKPOINT)
    assert int(state["rec_state"][0]) == partial.steps[-1]
    # the resumed run's first steps equal a fresh run's: compare a short continuation
    sim = Simulation.from_checkpoint(state)
    sim.advance(1000)
    fresh = Simulation(sim.model, sim.train)
    fresh.advance(int(state["rec_state"][0]) + 1000)
    np.testing.assert_array_equal(sim.weights(), fresh.weights())
    np.testing.assert_array_equal(sim.E, fresh.E)


@pytest.mark.slow
def test_killed_run_resumes_from_its_staging_checkpoint(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--d", "16", "--P", "6", "--k", "2", "--alpha", "3,2", "--eta", "1e-3",
            "--steps", "4000000", "--record", "64", "--checkpoint-every", "200000", "--quiet",
            "--seed", "2"]
    proc = subprocess.Popen(_console_script() + argv + ["--out", str(out)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    staging = tmp_path / "run.partial" / CHECKPOINT
    deadline = time.time() + 240
    while not staging.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    if not staging.exists():
        pytest.fail("the run finished or failed before writing a checkpoint")
    assert not out.exists(), "a killed run must not publish a result"
    code, stdout, stderr = _cli(["run", "--resume", str(out), "--quiet"], tmp_path)
    assert code == 0, stderr
    resumed = load_run(out)
    code, _, stderr = _cli(argv + ["--out", str(tmp_path / "ref")], tmp_path)
    assert code == 0, stderr
    _assert_same_run(resumed, load_run(tmp_path / "ref"))
    assert not (out / CHECKPOINT).exists() and not (tmp_path / "run.partial").exists()


# ------------------------------------------------------------------ hostile command lines

HOSTILE = ["0", "-1", "nan", "inf", "-inf", "1e400", "", "abc", "2.5", "99999999999999999999", "1e308",
           "0x10", " 7", "1,2", ",", "--", "-0"]
VALID = {
    "--d": ["8", "16"], "--P": ["4", "6"], "--k": ["2", "3"], "--alpha": ["3,2", "2", "4,3,2"],
    "--pi": ["0.5,0.5", "1", "0.2,0.3,0.5"], "--sigma": ["1", "0.5", "0"], "--m": ["1", "2", "3"],
    "--eta": ["0.05", "1e-300", "1e3"], "--eta-E": ["0", "0.01"], "--batch": ["2", "8"],
    "--steps": ["0", "1", "20"], "--seed": ["0", "5"], "--record": ["2", "7"],
    "--tol": ["0", "1e-3"], "--align-threshold": ["0.5", "1"], "--max-flow-time": ["1", "0.5"],
    "--head": ["offdiag", "frozen", "full"], "--engine": ["population", "sgd", "sgd-fast"],
    "--features": ["basis", "random"], "--split": ["bernoulli", "half"], "--feature-seed": ["1"],
    "--checkpoint-every": ["5"],
}
OTHER = ["--nope", "-x", "--force", "--d=8", "extra-positional"]


@st.composite
def argvs(draw):
    argv = ["run", "--steps", "10", "--d", "8", "--quiet"]
    for flag in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=6)):
        pool = VALID[flag] + HOSTILE
        argv += [flag, draw(st.sampled_from(pool))]
    if draw(st.booleans()):
        argv.append(draw(st.sampled_from(OTHER)))
    return argv


def _snapshot(root: Path, skip: set) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if not any(part in skip for part in p.relative_to(root).parts)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=argvs())
def test_hostile_command_lines_end_in_a_run_or_a_one_line_error(argv, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "keep.txt").write_text("user data")
    (root / "existing").mkdir()
    (root / "existing" / "summary.json").write_text("{}")
    target = root / "out"
    before = _snapshot(root, {"out", "out.partial"})
    code, stdout, stderr = _cli(argv + ["--out", str(target)], root)
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert code in (0, 2, 3), (code, stderr)
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("theory-sim: error:"), stderr
    else:
        run = load_run(target)
        assert run.status in ("converged", "max_steps", "diverged")
    assert _snapshot(root, {"out", "out.partial"}) == before


@pytest.mark.parametrize("argv, needle", [
    (["run", "--out", "existing"], "already exists"),
    (["run", "--out", "keep.txt"], "not a directory"),
    (["run", "--out", "keep.txt/sub"], "not writable"),
    (["run", "--resume", "nowhere"], "no checkpoint.npz"),
    (["run", "--checkpoint-every", "0"], "checkpoint-every"),
])
def test_bad_output_arguments_exit_2_and_touch_nothing(argv, needle, tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "summary.json").write_text("{}")
    before = _snapshot(tmp_path, set())
    code, _, stderr = _cli(argv + ["--steps", "5", "--d", "8", "--quiet"], tmp_path)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], stderr
    assert _snapshot(tmp_path, set()) == before


def test_divergence_keeps_the_finite_trajectory_and_names_the_fix(tmp_path):
    code, stdout, stderr = _cli(["run", "--d", "8", "--eta", "1e6", "--steps", "200", "--quiet",
                                 "--out", "div"], tmp_path)
    assert code == 3
    assert "lower --eta" in stderr.strip().splitlines()[-1]
    run = load_run(tmp_path / "div")
    assert run.status == "diverged"
    assert np.all(np.isfinite(run.alignment)) and np.all(np.isfinite(run.E))


def test_doctor_reports_versions_and_cache(tmp_path):
    code, stdout, _ = _cli(["doctor"], tmp_path)
    assert code == 0
    for word in ("numba", "numpy", "cpus", "cache"):
        assert word in stdout


@pytest.mark.slow
def test_sigterm_during_figures_keeps_finished_figures_and_marks_the_run_partial(tmp_path):
    out = tmp_path / "figs"
    proc = subprocess.Popen(_console_script() + ["figures", "--quick", "--out", str(out), "--quiet"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "fig1_alignment.png").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=240)
    if proc.returncode == 0:
        pytest.skip("the figures finished before the signal arrived")
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("theory-sim: interrupted (SIGTERM)")
    facts = json.loads((out / "figures-quick.json").read_text())
    made = facts["last_partial_run"]["figures"]
    assert facts["last_partial_run"]["interrupted"] is True and 1 <= len(made) < 7
    for name in made:  # every figure reported as made is complete on disk
        assert (out / f"{name}.png").stat().st_size > 1000
    assert not list(out.glob(".*.tmp"))
