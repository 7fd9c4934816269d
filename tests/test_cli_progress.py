"""What the progress lines and fig. 9 say, read as a user reads them (issue 18, small things):
the flow bar's solver steps, a collapsed run that is not phase IV, progress inside a figure,
a compile that shows it is alive, no interval on a bar of height zero."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from theory_sim.cli import progress as progress_mod
from theory_sim.cli.figures import Progress
from theory_sim.cli.progress import RunProgress, run_phase


def _bar(stream, **kw):
    return RunProgress(engine=kw.pop("engine", "population"), eta=0.01, max_steps=10**6, threshold=0.9,
                       tol=1e-5, compiling=kw.pop("compiling", False), compile_seconds=15, stream=stream,
                       **kw)


def _info(c_rows, E=None, **extra):
    return {"alignment": np.array(c_rows, dtype=float), "E": np.eye(2) if E is None else np.asarray(E),
            "loss": 2.0, **extra}


def test_a_collapsed_run_is_not_shown_as_phase_iv():
    code, who = run_phase(np.array([[0.99, 0.01], [0.97, 0.02]]), np.eye(2), 0.9)
    assert code == progress_mod.COLLAPSED and "v1" in who
    stream = io.StringIO()
    bar = _bar(stream)
    bar(5000, 10**6, _info([[0.99, 0.01], [0.97, 0.02]]) | {"done": True, "converged": True})
    line = stream.getvalue().splitlines()[-1]
    assert "phase IV" not in line and "collapsed (every neuron holds v1)" in line, line


def test_a_diverse_run_is_still_phase_iv():
    code, who = run_phase(np.array([[0.99, 0.01], [0.02, 0.97]]), np.eye(2), 0.9)
    assert code == 2 and who.startswith("|E - I|")


def test_the_flow_bar_counts_solver_steps_and_the_discrete_bar_steps():
    flow, discrete = io.StringIO(), io.StringIO()
    _bar(flow, engine="flow")(123, 10**15, _info([[0.1, 0.01], [0.02, 0.03]], flow_time=45.0, cap=1e9))
    _bar(discrete)(123, 10**6, _info([[0.1, 0.01], [0.02, 0.03]]))
    assert "solver steps 123" in flow.getvalue() and "t 45 " in flow.getvalue()
    assert "solver steps" not in discrete.getvalue() and ", step 123," in discrete.getvalue()


def test_a_long_compile_says_it_is_alive_until_the_first_report(monkeypatch):
    monkeypatch.setattr(progress_mod, "TICK_SECONDS", 0.05)
    stream = io.StringIO()
    bar = _bar(stream, compiling=True)
    assert "up to 3x that under load" in stream.getvalue().splitlines()[0]
    time.sleep(0.3)
    bar(10, 10**6, _info([[0.1, 0.01], [0.02, 0.03]]))
    lines = stream.getvalue().splitlines()
    ticks = [line for line in lines if line.startswith("theory-sim: still compiling the population")]
    assert ticks and lines.index(ticks[-1]) < [i for i, x in enumerate(lines) if "compiled in" in x][0]
    time.sleep(0.2)  # stopped by the first report: no line after it
    assert stream.getvalue().splitlines() == lines


def test_the_compile_ticker_stops_when_the_run_never_starts(monkeypatch):
    monkeypatch.setattr(progress_mod, "TICK_SECONDS", 0.05)
    stream = io.StringIO()
    bar = _bar(stream, compiling=True)
    bar.close()
    time.sleep(0.2)
    assert len(stream.getvalue().splitlines()) == 1


def test_a_stderr_that_fails_does_not_stop_the_run():
    class Failing(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    bar = _bar(Failing(), compiling=True)
    bar(10, 10**6, _info([[0.1, 0.01], [0.02, 0.03]]))  # no exception: the bar turns itself off
    assert not bar.enabled


def test_figures_show_the_progress_inside_the_current_figure():
    p = Progress(total=100.0, enabled=True)
    stream = io.StringIO()
    p.bar.stream, p.bar.tty = stream, False
    p.stage("fig9_ablations", 4.0)
    for _ in range(4):
        p.add(1.0)
    lines = stream.getvalue().splitlines()
    # the whole bar barely moves (4 of 100 units), but each quarter of the figure is a line of a log
    assert [line.split(" % of this figure")[0].rsplit(" ", 1)[-1] for line in lines] == \
        ["0", "25", "50", "75", "100"], lines
    assert all("fig9_ablations" in line for line in lines)


def test_fig9_draws_no_interval_on_a_bar_of_height_zero():
    import matplotlib

    matplotlib.use("Agg")
    import theory_sim as ts
    from theory_sim.plotting import ablations
    from theory_sim.status import OUTCOMES

    run = ts.simulate(ts.ModelParams(d=8), ts.TrainParams(steps=5, record=4))
    fractions = {k: 0.0 for k in OUTCOMES} | {"diverse": 1.0}
    wilson = {k: [0.0, 0.3] for k in OUTCOMES} | {"diverse": [0.7, 1.0]}
    rows = [{"label": "offdiag, sg on, BN", "fractions": fractions, "wilson95": wilson}]
    fig = ablations.ablation_figure(rows, [run])
    top = [ax for ax in fig.axes if ax.get_ylabel() == "fraction of runs"][0]
    segments = [seg for coll in top.collections for seg in coll.get_segments()]
    assert len(segments) == 1 and np.allclose(segments[0][:, 1], [0.7, 1.0]), segments


@pytest.mark.parametrize("text, shown", [("plain/ünï 日本", "plain/ünï 日本"), ("a\x1bb", "a\\x1bb"),
                                         ("r\u202el", "r\\u202el"), ("t\tx", "t\\x09x"),
                                         ("c\x9bd", "c\\x9bd")])
def test_shown_escapes_what_a_terminal_would_interpret(text, shown):
    from theory_sim.cli.output import shown as escape

    assert escape(text) == shown


def test_a_figure_that_reports_nothing_for_long_still_shows_its_time():
    p = Progress(total=10.0, enabled=True, heartbeat=0.05)
    stream = io.StringIO()
    p.bar.stream, p.bar.tty = stream, False
    p.stage("fig9_ablations", 4.0)  # e.g. compiling the variant kernels on first use
    time.sleep(0.4)
    p.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all("0 % of this figure" in line for line in lines), lines
    time.sleep(0.2)
    assert stream.getvalue().splitlines() == lines  # closed: no line after it
