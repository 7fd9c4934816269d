"""``theory-sim figures`` and theory_sim.experiments: the quick figure set end to end, the
command's errors, the experiments' building blocks, and the fig 4 exponents recomputed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import theory_sim as ts
from theory_sim import analysis as an
from theory_sim import experiments as ex
from theory_sim.cli import main
from theory_sim.experiments import fig4_scaling
from theory_sim.experiments.flow_runs import FLOW_OUTCOMES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.slow
def test_quick_figures_end_to_end(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["figures", "--quick", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wrote fig1_alignment.png" in printed
    for num, name in ex.FIGURES.items():
        w, h = _png_size(out / f"{name}.png")
        assert w >= 800 and h >= 400, (name, w, h)
        data = out / f"{name}.{ex.MODULES[num].DATA_FORMAT}"
        assert data.exists(), data
    facts = json.loads((out / "figures-quick.json").read_text())
    assert facts["quick"] is True and facts["wall_seconds"] > 0
    # regenerating one figure keeps the others' numbers
    assert main(["figures", "--quick", "--out", str(out), "--quiet", "--only", "2", "--force"]) == 0
    again = json.loads((out / "figures-quick.json").read_text())
    assert set(again["figures"]) == set(ex.FIGURES.values())
    assert again["wall_seconds"] == facts["wall_seconds"]
    assert again["last_partial_run"]["figures"] == ["fig2_head"]
    assert set(facts["figures"]) == set(ex.FIGURES.values())
    # figs 1-3: the default seed tells the whole story with the head, collapses without it
    f1 = facts["figures"]["fig1_alignment"]
    assert f1["trainable"]["outcome"] == "diverse"
    assert f1["frozen"]["outcome"] == "collapsed"
    t = f1["trainable"]["phase_times_flow"]
    assert t["T1"] < t["T2"] < t["T3"] <= t["T4"]
    # the data file is what was drawn
    with np.load(out / "fig3_substitution_acceleration.npz") as z:
        assert z["substitution_ratio"].shape == z["flow_time"].shape
    f5 = json.loads((out / "fig5_phase_diagram.json").read_text())
    counts = np.array([f5["counts"][oc] for oc in f5["outcomes"]])
    assert set(FLOW_OUTCOMES) == set(f5["outcomes"]) and "vanishing" not in f5["outcomes"]
    assert np.all(counts.sum(axis=0) == f5["seeds_per_cell"])
    f8 = json.loads((out / "fig8_paper_regime.json").read_text())
    for row in f8["rows"]:
        for head in ("trainable", "frozen"):
            assert sum(row[head]["counts"].values()) == row[head]["n"] == len(ex.QUICK.regime_seeds)
    f4 = json.loads((out / "fig4_scaling.json").read_text())
    for key in ex.THEORY:
        assert np.isfinite(f4[key]["fit"]["slope"]), key
    # no half-written files left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("argv, message", [
    (["--only", "99"], "--only takes figure numbers"),
    (["--only", "x"], "--only takes figure numbers"),
    (["--jobs", "0"], "--jobs must be"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["figures", "--out", str(tmp_path / "f"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_out_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["figures", "--out", str(f), "--only", "2"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_non_empty_out_needs_force(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["figures", "--quick", "--out", str(tmp_path), "--only", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists and is not empty" in err[0] and "--force" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert main(["figures", "--quick", "--out", str(tmp_path), "--only", "2", "--quiet", "--force"]) == 0
    assert (tmp_path / "fig2_head.png").exists() and (tmp_path / "notes.txt").read_text() == "mine"


def test_one_figure_only(tmp_path):
    assert main(["figures", "--quick", "--out", str(tmp_path), "--only", "2", "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig2_head.npz", "fig2_head.png",
                                                           "figures-quick.json"]


def test_coupled_weights_share_the_feature_coordinates_across_d():
    a = ex.coupled_weights(ts.ModelParams(d=256), 3)
    b = ex.coupled_weights(ts.ModelParams(d=4096), 3)
    np.testing.assert_allclose(a[:, :2] * 16, b[:, :2] * 64)
    assert a.shape == (2, 256) and b.shape == (2, 4096)
    # the rest is the usual N(0, 1/d) draw
    np.testing.assert_array_equal(b[:, 2:], ts.initial_weights(ts.ModelParams(d=4096), 3)[:, 2:])
    assert abs(np.var(b[:, 2:]) * 4096 - 1) < 0.1


@pytest.mark.parametrize("times, outcome, kind", [
    ((10, 30, 40), "diverse", "phase2"),
    ((10, 15, 40), "diverse", "other"),       # T2 < 2 T1: no substitution phase
    ((10, 8, 9), "diverse", "other"),         # the follower learned v2 alongside the leader
    ((10, None, None), "incomplete", "stuck"),
    ((10, 30, None), "collapsed", "other"),
    ((None, None, None), "incomplete", "other"),
])
def test_substitution_kind(times, outcome, kind):
    r = dict(zip(("T1", "T2", "T3"), times, strict=True), outcome=outcome)
    assert ex.substitution_kind(r) == kind


def test_plotting_leaves_no_pyplot_state():
    code = (
        "import sys, numpy as np, theory_sim as ts\n"
        "from theory_sim import plotting\n"
        "r = ts.simulate(ts.ModelParams(d=16), ts.TrainParams(eta=0.05, seed=2, steps=400, record=40))\n"
        "fig = plotting.head_figure(r)\n"
        "fig2 = plotting.alignment_figure([r, r], ['a', 'b'])\n"
        "import io; buf = io.BytesIO(); fig.savefig(buf, format='png')\n"
        "assert buf.getvalue()[:4] == b'\\x89PNG'\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'clean')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "clean"


def test_fig4_exponents_recomputed_lie_in_their_bands():
    """The three scaling experiments of fig 4 run afresh at --quick size (the same code as
    the committed full-size figure): each exponent, fitted here by an independent
    least-squares fit with one intercept per seed, lies in its band."""
    data = fig4_scaling.scaling_data(ex.QUICK)
    fits = ex.fit_scaling(data, ex.QUICK)
    for key, (lo, hi) in ex.BANDS.items():
        p = data[key]
        x = np.asarray(p["x"], float)
        y = np.asarray(p["y"], float)
        seed = np.asarray(p["seed"])
        keep = np.isfinite(y) & ~np.asarray(p.get("censored", np.zeros(x.shape, bool)), bool)
        if key == "T1_vs_d":
            keep &= x >= ex.QUICK.d_fit_min
        if key == "E_vs_ratio":
            keep &= x >= ex.QUICK.ratio_fit_min
        x, y, seed = np.log(x[keep]), np.log(y[keep]), seed[keep]
        groups = np.unique(seed)
        design = np.column_stack([x] + [(seed == g).astype(float) for g in groups])
        slope = np.linalg.lstsq(design, y, rcond=None)[0][0]
        assert fits[key]["slope"] == pytest.approx(slope, rel=1e-9), key
        assert lo <= slope <= hi, f"{key}: fitted slope {slope:.3f} outside [{lo}, {hi}]"


def test_quick_fig4_exponent_of_eta_is_minus_one():
    """T1 against eta on a small grid: the flow-time invariance T1 ~ 1/eta (in steps)."""
    base = ts.ModelParams()
    trains = [ts.TrainParams(eta=eta, seed=s, max_flow_time=400.0) for eta in (0.002, 0.01, 0.05)
              for s in (4, 5)]
    res = ex.run_many(base, trains)
    x = [t.eta for t in trains]
    y = [r["T1"] for r in res]
    fit = an.fit_power_law(x, y, [t.seed for t in trains])
    lo, hi = ex.BANDS["T1_vs_eta"]
    assert lo <= fit.slope <= hi


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["figures", "--only", "2"]])
def test_a_command_module_that_fails_to_import_fails_loudly(monkeypatch, capsys, argv):
    """Not a silent gap in --help: every command names the broken module and the exception."""
    monkeypatch.setitem(sys.modules, "theory_sim.cli.figures", None)  # its import raises ModuleNotFoundError
    assert main(argv) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "theory_sim.cli.figures" in err[0] and "'figures' command" in err[0]
    assert "ModuleNotFoundError" in err[0]
