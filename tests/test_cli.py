"""The command line (``theory-sim run``): in-process through ``theory_sim.cli.main`` and
once through the installed console script."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import theory_sim as ts
from theory_sim import analysis
from theory_sim.cli import main

SMALL = ["--d", "64", "--eta", "1e-2", "--max-flow-time", "2000", "--quiet"]
"""A complete but fast run (population engine, ~1e5 steps, well under a second)."""

SCRIPT = Path(sys.executable).with_name("theory-sim")
ARRAYS = ("steps", "alignment", "norms", "E", "loss", "rho", "gram", "W0", "W", "E_final")


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, out, err):
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("theory-sim: error:"), err
    assert "Traceback" not in err and "Traceback" not in out


def tree(path: Path) -> dict:
    """Every file below ``path`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small run shared by several tests (capsys is per test: capture by hand)."""
    out_dir = tmp_path_factory.mktemp("cli") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["run", *SMALL, "--out", str(out_dir)])
    return code, out_dir, stdout.getvalue(), stderr.getvalue()


# ---------------------------------------------------------------- the main run


def test_run_writes_trajectory_and_summary(small_run):
    code, out_dir, out, err = small_run
    assert code == 0, err
    assert err == ""                                   # --quiet: nothing on stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["summary.json", "trajectory.npz"]
    assert not out_dir.with_name(out_dir.name + ".partial").exists()
    assert "phase times" in out and "final alignment" in out and str(out_dir) in out
    summary = json.loads((out_dir / "summary.json").read_text())
    for key in ("config", "status", "message", "steps", "flow_time", "phase_times_steps",
                "phase_times_flow", "leader", "follower", "final_alignment", "peak_offdiag_E",
                "final_E", "final_head_distance", "final_loss", "outcome"):
        assert key in summary, key
    assert set(summary["phase_times_steps"]) == {"T1", "T2", "T3", "T4"}
    cfg = summary["config"]
    assert cfg["version"] == ts.__version__
    assert cfg["train"]["seed"] == 1 and cfg["train"]["eta"] == 1e-2
    assert cfg["train"]["max_flow_time"] == 2000 and cfg["model"]["d"] == 64


def test_summary_agrees_with_the_stored_trajectory(small_run):
    _, out_dir, _, _ = small_run
    run = ts.load_run(out_dir)
    summary = json.loads((out_dir / "summary.json").read_text())
    assert run.config == summary["config"] and run.status == summary["status"]
    np.testing.assert_array_equal(summary["final_alignment"], np.abs(run.alignment[-1]))
    np.testing.assert_array_equal(summary["peak_offdiag_E"], analysis.peak_offdiag(run))
    assert summary["phase_times_steps"] == {k: v for k, v in analysis.phase_times(run).as_dict().items()
                                            if k.startswith("T")}
    assert summary["steps"] == run.steps[-1]
    assert summary["final_loss"] == run.loss[-1]
    # and it is the run the library computes for the same parameters
    model = ts.ModelParams(**{**run.config["model"], "alpha": tuple(run.config["model"]["alpha"]),
                              "pi": tuple(run.config["model"]["pi"])})
    again = ts.simulate(model, ts.TrainParams(**run.config["train"]))
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(again, name), getattr(run, name), err_msg=name)


def test_same_seed_gives_the_same_numbers(small_run, tmp_path, capsys):
    _, first, _, _ = small_run
    code, _, err = run_cli(["run", *SMALL, "--out", str(tmp_path / "again")], capsys)
    assert code == 0, err
    a, b = ts.load_run(first), ts.load_run(tmp_path / "again")
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    sa = json.loads((first / "summary.json").read_text())
    sb = json.loads((tmp_path / "again" / "summary.json").read_text())
    sa.pop("elapsed_seconds")
    sb.pop("elapsed_seconds")
    assert sa == sb
    code, _, err = run_cli(["run", *SMALL, "--seed", "2", "--out", str(tmp_path / "other")], capsys)
    assert code == 0, err
    assert not np.array_equal(ts.load_run(tmp_path / "other").W0, a.W0)


# ---------------------------------------------------------------- existing output


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["run", *SMALL, "--out", str(out)], capsys)
    assert code == 0, err
    first = tree(out)
    before = tree(tmp_path)
    code, stdout, err = run_cli(["run", *SMALL, "--seed", "2", "--out", str(out)], capsys)
    assert_usage_error(code, stdout, err)
    assert "--force" in err
    assert tree(tmp_path) == before                       # nothing changed, nothing added
    code, _, err = run_cli(["run", *SMALL, "--seed", "2", "--out", str(out), "--force"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "trajectory.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert tree(out) != first and ts.load_run(out).config["train"]["seed"] == 2


def test_force_never_replaces_a_directory_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    before = tree(tmp_path)
    code, stdout, err = run_cli(["run", *SMALL, "--out", str(out), "--force"], capsys)
    assert_usage_error(code, stdout, err)
    assert "keep.txt" in err and "not a theory-sim run" in err
    assert tree(tmp_path) == before


def test_existing_empty_output_is_used(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    code, _, err = run_cli(["run", *SMALL, "--out", str(out)], capsys)
    assert code == 0, err
    ts.load_run(out)


def test_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code, out, err = run_cli(["run", *SMALL, "--out", str(target)], capsys)
    assert_usage_error(code, out, err)
    assert target.read_text() == "x"


# ---------------------------------------------------------------- any --out


HOSTILE_OUT = [".", "..", "", "   ", "/", "file", "file/sub", "file/sub/deeper", "a" * 300,
               "dir/" + "b" * 300, "nul\x00byte", "./", "sub/.."]


@pytest.mark.parametrize("target", HOSTILE_OUT, ids=[repr(t[:20]) for t in HOSTILE_OUT])
@pytest.mark.parametrize("flag", ["--out", "--resume"])
def test_any_bad_out_is_one_line_and_touches_nothing(target, flag, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "file").write_text("x")
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    code, stdout, err = run_cli(["run", "--d", "8", "--steps", "5", "--quiet", flag, target], capsys)
    assert_usage_error(code, stdout, err)
    assert flag in err
    assert tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


@pytest.mark.parametrize("name", ["with space", "ünïcødé-ρ", "日本語 run", "-dash", "x.partial.y"])
def test_out_names_with_spaces_and_unicode_work(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["run", "--d", "8", "--steps", "5", "--quiet", f"--out={name}"], capsys)
    assert code == 0, err
    assert ts.load_run(tmp_path / name).steps[-1] == 5
    assert f"results: {name}/" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_directory_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, stdout, err = run_cli(["run", "--d", "8", "--steps", "5", "--quiet",
                                     "--out", str(locked / "run")], capsys)
    finally:
        locked.chmod(0o700)
    assert_usage_error(code, stdout, err)
    assert "not writable" in err and list(locked.iterdir()) == []


def test_unwritable_directory_is_one_line(tmp_path, monkeypatch, capsys):
    """The same refusal as a read-only directory, made to happen also when tests run as root."""
    from theory_sim.cli import output

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(output.Path, "mkdir", refuse)
    code, stdout, err = run_cli(["run", "--d", "8", "--steps", "5", "--quiet",
                                 "--out", str(tmp_path / "run")], capsys)
    assert_usage_error(code, stdout, err)
    assert "not writable (Permission denied)" in err
    assert list(tmp_path.iterdir()) == []


def test_failed_publish_keeps_the_old_result_and_the_new_one(tmp_path, monkeypatch, capsys):
    """A failure while moving the finished run into place (after --force) puts the old
    run back and says where the complete new one is: nothing written is lost."""
    from theory_sim.cli import output

    out = tmp_path / "run"
    code, _, err = run_cli(["run", *SMALL, "--out", str(out)], capsys)
    assert code == 0, err
    old = tree(out)
    real_replace = os.replace

    def flaky_replace(src, dst):
        if str(src).endswith(".partial"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(output.os, "replace", flaky_replace)
    code, stdout, err = run_cli(["run", *SMALL, "--seed", "2", "--out", str(out), "--force"], capsys)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("theory-sim: error:") and "No space left" in lines[0]
    assert "Traceback" not in err and stdout == ""
    assert tree(out) == old                                  # the old run is back, unchanged
    partial = tmp_path / "run.partial"
    assert str(partial) in lines[0]
    assert ts.load_run(partial).config["train"]["seed"] == 2  # and the new one is complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.partial"]


# ---------------------------------------------------------------- bad input


BAD_INPUTS = [
    ["--eta", "-1"],
    ["--eta", "nan"],
    ["--eta", "inf"],
    ["--eta-E", "-0.1"],
    ["--k", "1"],
    ["--k", "17"],
    ["--alpha", "0,3"],
    ["--alpha", "6,x"],
    ["--pi", "0.3,0.3"],
    ["--pi", "1"],
    ["--sigma", "-1"],
    ["--head", "nope"],
    ["--engine", "gpu"],
    ["--batch", "1"],
    ["--d", "abc"],
    ["--d", "0"],
    ["--P", "7", "--split", "half"],
    ["--seed", "-1"],
    ["--record", "1"],
    ["--bogus-flag"],
    ["--engine", "sgd", "--batch", "1000000", "--d", "2000"],   # refused as too large
]


@pytest.mark.parametrize("extra", BAD_INPUTS, ids=[" ".join(b) for b in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(extra, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["run", "--d", "64", "--quiet", *extra, "--out", str(out)], capsys)
    assert_usage_error(code, stdout, err)
    assert list(tmp_path.iterdir()) == []          # no run directory, no NAME.partial


def test_missing_or_unknown_command(capsys):
    for argv in ([], ["frobnicate"]):
        code, out, err = run_cli(argv, capsys)
        assert_usage_error(code, out, err)


# ---------------------------------------------------------------- the installed script


def test_console_script_runs_and_fails_cleanly(tmp_path):
    assert SCRIPT.exists(), SCRIPT
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    ok = subprocess.run([str(SCRIPT), "run", *SMALL, "--out", str(out)], capture_output=True, text=True,
                        timeout=600, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "phase times" in ok.stdout
    run = ts.load_run(out)
    assert run.config["train"]["seed"] == 1
    summary = json.loads((out / "summary.json").read_text())
    np.testing.assert_array_equal(summary["final_alignment"], np.abs(run.alignment[-1]))
    bad = subprocess.run([str(SCRIPT), "run", "--eta", "nan", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith("theory-sim: error:")
    assert "Traceback" not in bad.stderr and "eta" in bad.stderr
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- the paper's story, end to end


def _summary(out, argv, capsys):
    code, _, err = run_cli(["run", *argv, "--quiet", "--out", str(out)], capsys)
    assert code == 0, err
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_default_model_collapses_without_head_and_diversifies_with_it(tmp_path, capsys):
    """docs/model.md section 5 at the default model (d = 512, seed 1): with E frozen at I both
    neurons learn v1; with the off-diagonal head one learns v1 (T1), the head entry
    peaks (T2), the other neuron then learns v2 (T3)."""
    frozen = _summary(tmp_path / "frozen", ["--head", "frozen", "--d", "512", "--eta", "1e-2"], capsys)
    assert frozen["status"] == "converged", frozen["message"]
    assert frozen["outcome"] == "collapsed"
    assert all(row[0] >= 0.9 for row in frozen["final_alignment"])
    head = _summary(tmp_path / "head", ["--d", "512", "--eta", "1e-2"], capsys)
    assert head["config"]["train"]["head"] == "offdiag" and head["config"]["train"]["seed"] == 1
    assert head["status"] == "converged", head["message"]
    assert head["outcome"] == "diverse"
    t = head["phase_times_steps"]
    assert None not in (t["T1"], t["T2"], t["T3"]), t
    assert t["T1"] < t["T2"] <= t["T3"], t
    lead, fol = head["leader"], head["follower"]
    assert head["final_alignment"][lead][0] >= 0.9 and head["final_alignment"][fol][1] >= 0.9
    assert head["peak_offdiag_E"][fol][lead] > 0


# ------------------------------------------------ signals: 130 after Ctrl-C, 143 after SIGTERM


def test_signal_exit_statuses_follow_128_plus_n():
    import signal

    from theory_sim.cli import signals

    assert signals.exit_status("SIGINT") == 130 and signals.exit_status(None) == 130
    assert signals.exit_status("SIGTERM") == 143
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        with signals.GracefulStop() as stop:
            assert not stop() and stop.exit_status == 130
            os.kill(os.getpid(), sig)
            assert stop() and stop.requested == sig.name
        assert stop.exit_status == status
    with pytest.raises(KeyboardInterrupt) as info, signals.term_as_interrupt() as received:
        os.kill(os.getpid(), signal.SIGTERM)
    assert signals.interrupt_status(info.value) == 143 and received.exit_status == 143
    assert signals.interrupt_status(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


# ---------------------------------------------------------------- regime warnings


def _warnings(err):
    return [line for line in err.splitlines() if line.startswith("theory-sim: warning:")]


@pytest.mark.parametrize("extra, needle", [
    (["--alpha", "3,6"], "does not decrease"),
    (["--alpha", "6"], "single feature"),
    (["--eta", "10"], "small-step regime"),
    (["--eta", "1e4"], "small-step regime"),
    (["--m", "1"], "m = 1"),
])
def test_settings_outside_the_regime_warn_once_and_still_run(extra, needle, tmp_path, capsys):
    code, out, err = run_cli(["run", "--steps", "5", "--quiet", *extra, "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and _warnings(err) == lines and needle in lines[0], err
    assert ts.load_run(tmp_path / "r").steps[-1] == 5 and "phase times" in out


@pytest.mark.parametrize("extra", [[], ["--d", "512", "--eta", "1e-3"]], ids=["default", "readme"])
def test_the_default_and_readme_runs_print_no_warning(extra, tmp_path, capsys):
    code, _, err = run_cli(["run", "--steps", "5", "--quiet", *extra, "--out", str(tmp_path / "r")], capsys)
    assert code == 0 and err == "", err


FIGURE_SETTINGS = [  # (model, train, seeds) as the figures and the README run them
    ({}, {"eta": 1e-2}, [1]),                                                   # Figs. 1-3
    ({}, {"eta": 0.3}, range(1, 9)),                                            # Fig. 4, T1 vs eta
    ({"d": 1024}, {"eta": 0.1}, range(1, 9)),                                   # Fig. 4, T1 vs d
    ({"alpha": (6.0, 2.0)}, {"eta": 0.1, "eta_E": 0.1}, range(1, 17)),          # Fig. 5 corner
    ({"alpha": (6.0, 4.8)}, {"eta": 0.1, "eta_E": 3e-4}, range(1, 17)),         # Fig. 5 corner
    ({}, {"eta": 0.1, "head": "frozen"}, range(1, 65)),                         # Fig. 5 defaults
    ({"d": 32}, {"eta": 0.04, "engine": "sgd"}, [2]),                           # Fig. 6
    ({"alpha": (6.0, 4.5, 3.5, 3.0), "pi": (0.25,) * 4, "m": 8}, {"eta": 0.05}, [1]),  # Fig. 7
    ({"d": 32}, {"eta": 0.01, "engine": "sgd", "batch": 4096}, [2]),            # README sgd
    ({"alpha": (4.0, 3.0)}, {"eta": 1e-2}, range(1, 33)),                       # README sweep
    ({"alpha": (8.0, 3.0)}, {"eta": 1e-2}, range(1, 33)),
]


@pytest.mark.parametrize("model_kw, train_kw, seeds", FIGURE_SETTINGS)
def test_figure_and_readme_settings_are_inside_the_regime(model_kw, train_kw, seeds):
    from theory_sim.regime import regime_warnings

    model = ts.ModelParams(**model_kw)
    for seed in seeds:
        assert regime_warnings(model, ts.TrainParams(**train_kw, seed=seed)) == [], seed


@pytest.mark.parametrize("model_kw, seed", [({"d": 64}, 1), ({"alpha": (6.0, 2.0)}, 2), ({}, 1)])
def test_small_step_bound_separates_damped_from_growing_perturbations(model_kw, seed):
    """The bound's meaning, checked on the dynamics (numpy gradient descent on
    ``population_grad``): at the learned fixed point ``w_j = v_j`` a small perturbation
    decays for eta just below 2 / curvature and grows just above it."""
    from theory_sim.regime import _spectral_radius_of_step

    model = ts.ModelParams(**model_kw)
    V = ts.feature_vectors(model)
    W_star = np.ascontiguousarray(V[:, [0, 1]].T)
    E = np.eye(2)
    assert np.abs(ts.population_grad(W_star, E, model)[0]).max() < 1e-12   # a fixed point
    limit = 2.0 / _spectral_radius_of_step(model, W_star)
    delta = np.random.default_rng(seed).standard_normal(W_star.shape) * 1e-9

    def growth(eta, steps=60):  # short: scale invariance re-stabilises a grown perturbation later
        W = W_star + delta
        for _ in range(steps):
            W = W - eta * ts.population_grad(W, E, model)[0]
        return np.linalg.norm(W / np.linalg.norm(W, axis=1, keepdims=True) - W_star) / np.linalg.norm(delta)

    assert growth(0.9 * limit) < 2.0
    assert growth(1.1 * limit) > 1e3


# ---------------------------------------------------------------- why a run is incomplete


def test_complete_run_gives_no_incomplete_reasons(small_run):
    _, out_dir, out, _ = small_run
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["outcome"] != "incomplete" and summary["incomplete_reasons"] == []
    assert "incomplete:" not in out


def test_capped_run_with_a_follower_at_its_initialisation_says_so(tmp_path, capsys):
    code, out, err = run_cli(["run", "--seed", "0", "--eta", "1e-2", "--max-flow-time", "3000", "--quiet",
                              "--out", str(tmp_path / "r")], capsys)
    assert code == 0 and err == "", err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    reasons = summary["incomplete_reasons"]
    assert summary["outcome"] == "incomplete"
    run = ts.load_run(tmp_path / "r")
    stuck = int(np.argmin(np.abs(run.alignment[-1]).max(axis=1)))
    assert np.abs(run.alignment[-1, stuck]).max() < 4 / np.sqrt(512)      # the premise, measured
    assert any(f"neuron {stuck + 1} is still close to its initialisation" in r for r in reasons), reasons
    assert any("nearly stationary" in r for r in reasons), reasons
    assert sum("incomplete:" in line for line in out.splitlines()) == len(reasons)


def test_large_step_run_says_capped_while_moving_and_names_the_head_entry(tmp_path, capsys):
    code, out, err = run_cli(["run", "--eta", "10", "--quiet", "--out", str(tmp_path / "r")], capsys)
    assert code == 0
    reasons = json.loads((tmp_path / "r" / "summary.json").read_text())["incomplete_reasons"]
    run = ts.load_run(tmp_path / "r")
    tail_start = int(np.searchsorted(run.steps, run.steps[-1] * 0.9))
    assert np.abs(np.abs(run.alignment[-1]) - np.abs(run.alignment[tail_start])).max() > 1e-3  # premise
    assert any("while still moving" in r for r in reasons), reasons
    assert np.abs(run.E[-1][1, 0]) > 10 and any("|E[2,1]|" in r for r in reasons), reasons
    assert any("between features" in r for r in reasons), reasons


def test_an_oscillating_trajectory_is_called_oscillating():
    from dataclasses import replace

    from theory_sim.regime import incomplete_reasons

    train = ts.TrainParams(eta=1e-2, steps=2000, record=400)
    run = ts.simulate(ts.ModelParams(d=64), train)
    assert incomplete_reasons(run) and not any("oscillat" in r for r in incomplete_reasons(run))
    E = run.E.copy()
    E[:, 1, 0] += 0.05 * (-1.0) ** np.arange(len(E))      # a period-2 flip of one head entry
    flipped = replace(run, E=E)
    assert any("oscillating" in r for r in incomplete_reasons(flipped)), incomplete_reasons(flipped)


# ---------------------------------------------------------------- --resume


RESUME_MODEL = ts.ModelParams(d=16, P=6, k=2, alpha=(3.0, 2.0))
RESUME_ARGS = ["--d", "16", "--P", "6", "--k", "2", "--alpha", "3,2"]


def _killed_run(tmp_path, train, steps_done):
    """What a run killed after ``steps_done`` steps leaves: DIR.partial/checkpoint.npz."""
    from theory_sim.io import save_checkpoint

    sim = ts.Simulation(RESUME_MODEL, train)
    sim.advance(steps_done)
    (tmp_path / "run.partial").mkdir()
    save_checkpoint(sim.checkpoint(), tmp_path / "run.partial" / "checkpoint.npz")
    return tmp_path / "run"


@pytest.mark.parametrize("extra, named", [
    (["--d", "64"], "--d 64 (stored: 16)"),
    (["--alpha", "6,3"], "--alpha 6,3 (stored: 3,2)"),
    (["--engine", "sgd", "--seed", "9"], "--engine sgd (stored: population), --seed 9 (stored: 3)"),
    (["--eta", "0.1"], "--eta 0.1 (stored: 0.05)"),
])
def test_resume_refuses_options_that_conflict_with_the_stored_run(extra, named, tmp_path, capsys):
    target = _killed_run(tmp_path, ts.TrainParams(eta=0.05, steps=400, seed=3, record=20), 100)
    before = tree(tmp_path)
    code, out, err = run_cli(["run", "--resume", str(target), "--quiet", *extra], capsys)
    assert_usage_error(code, out, err)
    assert named in err and "only --steps and --max-flow-time may change" in err
    assert tree(tmp_path) == before


def test_resume_applies_a_new_budget_and_says_so(tmp_path, capsys):
    train = ts.TrainParams(eta=0.05, steps=400, seed=3, record=20)
    target = _killed_run(tmp_path, train, 100)
    # options equal to the stored ones are not conflicts
    code, out, err = run_cli(["run", "--resume", str(target), "--quiet", *RESUME_ARGS, "--seed", "3",
                              "--steps", "700"], capsys)
    assert code == 0, err
    assert err.splitlines() == [f"theory-sim: resuming {target} at step 100 (flow time 5); "
                                "--steps changed from 400 to 700"]
    resumed = ts.load_run(target)
    fresh = ts.simulate(RESUME_MODEL, ts.TrainParams(eta=0.05, steps=700, seed=3, record=20))
    assert resumed.steps[-1] == 700
    np.testing.assert_array_equal(resumed.W, fresh.W)          # the same 700 steps, bit for bit
    np.testing.assert_array_equal(resumed.E_final, fresh.E_final)


def test_resume_applies_a_new_flow_time_cap(tmp_path, capsys):
    train = ts.TrainParams(eta=0.05, seed=3, max_flow_time=10.0, record=20)
    target = _killed_run(tmp_path, train, 100)
    code, _, err = run_cli(["run", "--resume", str(target), "--quiet", "--max-flow-time", "20"], capsys)
    assert code == 0, err
    assert "--max-flow-time changed from 10.0 to 20.0" in err
    run = ts.load_run(target)
    assert run.config["train"]["max_flow_time"] == 20.0 and run.steps[-1] == 400


def test_resume_of_a_finished_run_says_it_is_finished(small_run, capsys):
    _, out_dir, _, _ = small_run
    before = tree(out_dir)
    code, out, err = run_cli(["run", "--resume", str(out_dir), "--quiet"], capsys)
    assert_usage_error(code, out, err)
    assert "already finished" in err and "converged" in err
    assert tree(out_dir) == before


def test_resume_of_a_missing_directory_says_so(tmp_path, capsys):
    code, out, err = run_cli(["run", "--resume", str(tmp_path / "nowhere"), "--quiet"], capsys)
    assert_usage_error(code, out, err)
    assert "no such directory" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- progress and the first compile


def _progress_lines(feed, *, compiling, converged=True, compile_pause=0.0):
    from theory_sim.cli.progress import RunProgress

    stream = io.StringIO()
    bar = RunProgress(engine="population", eta=0.01, max_steps=10**6, threshold=0.9, tol=1e-5,
                      compiling=compiling, compile_seconds=15, stream=stream)
    import time

    time.sleep(compile_pause)
    for i, (step, info) in enumerate(feed):
        last = i == len(feed) - 1
        bar(step, 10**6, info | ({"done": True, "converged": converged} if last else {}))
    return stream.getvalue().splitlines(), bar


def _info(c_rows, E=None):
    return {"alignment": np.array(c_rows, dtype=float), "E": np.eye(2) if E is None else np.asarray(E),
            "loss": 2.0}


STORY = [  # |c| of two neurons on two features, and the head, through the phases
    (1000, _info([[0.05, 0.01], [0.02, 0.03]])),
    (2000, _info([[0.30, 0.01], [0.02, 0.03]])),
    (3000, _info([[0.95, 0.01], [0.02, 0.05]], [[1, 0], [0.3, 1]])),
    (4000, _info([[0.99, 0.01], [0.02, 0.40]], [[1, 0], [0.3, 1]])),
    (5000, _info([[0.99, 0.01], [0.02, 0.95]], [[1, 0], [0.2, 1]])),
    (6000, _info([[0.99, 0.01], [0.02, 0.99]], [[1, 0], [0.005, 1]])),
]


def test_run_bar_follows_the_phases_to_convergence():
    lines, bar = _progress_lines(STORY, compiling=False)
    assert not any("compil" in line for line in lines)
    phases = [line.split("phase ")[1].split(" ")[0] for line in lines]
    assert phases[0] == "I" and "II-III" in phases and phases[-1] == "IV", lines
    fills = [float(line.split("]")[1].split("%")[0]) for line in lines]
    assert fills == sorted(fills) and fills[0] < 25 and fills[-1] == 100.0, lines
    assert all("t " in line and "(cap 1e+04)" in line and "loss" in line for line in lines)


def test_run_bar_of_a_capped_run_does_not_claim_completion():
    lines, _ = _progress_lines(STORY[:4], compiling=False, converged=False)
    assert float(lines[-1].split("]")[1].split("%")[0]) < 75.0
    assert "II-III" in lines[-1]


def test_first_compile_is_announced_and_kept_out_of_the_clock():
    lines, bar = _progress_lines(STORY, compiling=True, compile_pause=0.3)
    assert lines[0].startswith("theory-sim: compiling the population kernels")
    assert "Ctrl-C takes effect when compiling ends" in lines[0]
    assert lines[1].startswith("theory-sim: compiled in ") and bar.compile_time >= 0.3
    first_clock = float(lines[2].split("%")[1].split("s")[0])
    assert first_clock < 0.3                                   # the bar's clock starts after compiling


def test_run_progress_on_stderr_shows_phases_not_a_fraction_of_the_cap(tmp_path, capsys):
    code, _, err = run_cli(["run", "--d", "64", "--eta", "1e-2", "--max-flow-time", "2000",
                            "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    lines = err.splitlines()
    assert lines and all(line.startswith("run [") for line in lines), err   # compiled already: no notice
    assert "phase IV" in lines[-1] and "100.0%" in lines[-1]
    assert "phase I " in lines[0]


# ---------------------------------------------------------------- doctor: the kernel cache per engine


def test_doctor_reports_each_engine_cold_in_an_empty_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONWARNINGS="ignore")
    done = subprocess.run([str(SCRIPT), "doctor"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.strip().startswith("engine ")}
    assert sorted(rows) == ["flow", "population", "sgd", "sgd-fast"]
    assert all(" cold " in row for row in rows.values()), done.stdout


def test_doctor_says_warm_for_kernels_compiled_in_this_process(small_run):
    from theory_sim.cli.doctor import engine_cache_state

    assert engine_cache_state("population") == "warm"          # small_run ran the population engine


@pytest.mark.slow
def test_first_run_in_a_cold_cache_announces_the_compile_and_doctor_tells_engines_apart(tmp_path):
    """A cold cache: the population run says it compiles and how long it took; afterwards
    doctor calls population warm and both SGD engines still cold (the issue: "warm" too early)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONWARNINGS="ignore")
    ran = subprocess.run([str(SCRIPT), "run", "--d", "8", "--steps", "5", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert ran.returncode == 0, ran.stderr
    # a compile longer than progress.TICK_SECONDS also prints "still compiling" lines
    lines = [line for line in ran.stderr.splitlines() if "still compiling" not in line]
    assert lines[0].startswith("theory-sim: compiling the population kernels") and "Ctrl-C" in lines[0]
    assert lines[1].startswith("theory-sim: compiled in ")
    assert float(lines[1].split("compiled in ")[1].split(" s")[0]) > 1.0
    doc = subprocess.run([str(SCRIPT), "doctor"], capture_output=True, text=True, timeout=300, env=env)
    rows = {line.split()[1]: line.split()[2] for line in doc.stdout.splitlines()
            if line.strip().startswith("engine ")}
    assert rows == {"population": "warm", "sgd": "cold", "sgd-fast": "cold", "flow": "cold"}, doc.stdout


def test_divergence_at_the_first_step_still_writes_a_summary(tmp_path, capsys, monkeypatch):
    """Found by the fuzzer: a run that diverges before recording a point. ``--alpha 1e308,1``
    (alpha^6 overflows) did it and is now refused up front; the data constants are made
    infinite by hand instead."""
    code, out, err = run_cli(["run", "--d", "8", "--steps", "5", "--quiet", "--alpha", "1e308,1",
                              "--out", str(tmp_path / "refused")], capsys)
    assert code == 2 and err.splitlines() == [err.strip()] and "alpha[0] must be at most" in err
    assert not (tmp_path / "refused").exists()
    from theory_sim.engines import base
    from theory_sim.model import model_constants

    def overflowing(model):
        lam, *rest = model_constants(model)
        return (lam * np.inf, *rest)

    monkeypatch.setattr(base, "model_constants", overflowing)
    code, out, err = run_cli(["run", "--d", "8", "--steps", "5", "--quiet", "--out", str(tmp_path / "r")],
                             capsys)
    assert code == 3
    assert "Traceback" not in err and err.splitlines()[-1].startswith("theory-sim: error: diverged at step 0")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps"] == 0 and summary["outcome"] == "incomplete"
    assert "no point was recorded" in out
