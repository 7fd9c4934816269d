"""theory_sim.plotting on small synthetic runs built by hand (no simulation): the axes, the
labels, and that the data drawn (line data, image arrays, bar heights) is the input."""

from __future__ import annotations

import numpy as np
import pytest

from theory_sim import plotting
from theory_sim.params import ModelParams
from theory_sim.plotting.outcomes import GRID_OUTCOMES
from theory_sim.results import Run
from theory_sim.status import OUTCOMES

ETA = 0.1


def _ramp(T: int, centre: int, width: float = 6.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.arange(T) - centre) / width))


def synthetic_run(*, m: int = 2, L: int = 2, T: int = 200, status: str = "converged", seed: int = 0) -> Run:
    """Neuron 1 learns v_1 (about point 50), neuron 2 learns v_2 (about point 120), the head
    entry E_21 rises to a peak at point 90 and falls back; other neurons stay unaligned."""
    rng = np.random.default_rng(seed)
    c = np.full((T, m, L), 0.05) + 0.01 * rng.random((T, m, L))
    c[:, 0, 0] = 0.05 + 0.95 * _ramp(T, 50)
    if m > 1 and L > 1:
        c[:, 1, 1] = 0.05 + 0.95 * _ramp(T, 120)
    c[:, 0, 1:] = 0.02
    E = np.tile(np.eye(m), (T, 1, 1))
    if m > 1:
        E[:, 1, 0] = 0.3 * np.exp(-((np.arange(T) - 90) / 25.0) ** 2)
        E[:, 0, 1] = -0.01 * _ramp(T, 60)
    model = ModelParams(alpha=tuple(6.0 - l for l in range(L)), pi=(1.0 / L,) * L, m=m)
    return Run(steps=np.arange(T) * 10, alignment=c, norms=np.ones((T, m)), E=E, loss=np.linspace(2, 0, T),
               rho=np.zeros((T, m)), gram=np.tile(np.eye(m), (T, 1, 1)),
               config={"model": model.to_dict(), "train": {"eta": ETA, "steps": None}}, status=status)


@pytest.fixture(scope="module")
def run():
    return synthetic_run()


def _plot_axes(fig):
    """The axes that hold data (not colorbars), in order of creation."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_visible()]


def _lines(ax, prefix: str):
    return [ln for ln in ax.get_lines() if str(ln.get_label()).startswith(prefix)]


def test_alignment_figure_draws_every_pair_and_a_zoom(run):
    frozen = synthetic_run(seed=1)
    fig = plotting.alignment_figure([run, frozen], ["with head", "frozen"])
    axes = _plot_axes(fig)
    assert len(axes) == 3  # two runs and the zoom on T2-T4 of the first
    assert axes[0].get_title().startswith("with head: ")
    assert axes[1].get_title().startswith("frozen: ")
    assert "zoom" in axes[2].get_title()
    assert "alignment" in axes[0].get_ylabel() and "flow time" in axes[0].get_xlabel()
    assert axes[0].get_xscale() == "log" and axes[2].get_xscale() == "linear"
    t = run.flow_time
    for ax, r in zip(axes[:2], (run, frozen), strict=True):
        lines = _lines(ax, "neuron")
        assert len(lines) == 4
        for ln in lines:
            j, l = int(ln.get_label()[7]) - 1, int(ln.get_label().split("v_")[1][0]) - 1
            np.testing.assert_array_equal(ln.get_ydata(), np.abs(r.alignment[:, j, l]))
            np.testing.assert_array_equal(ln.get_xdata()[1:], t[1:])
            assert np.isnan(ln.get_xdata()[0])  # t = 0 has no place on a log axis
    lo, hi = axes[2].get_xlim()
    assert 0 <= lo < 90 * 10 * ETA < hi  # the zoom holds T2 (the head's peak)


def test_alignment_figure_without_phase_two_has_no_zoom():
    r = synthetic_run(m=1, L=1)
    fig = plotting.alignment_figure([r], ["one neuron"])
    assert len(_plot_axes(fig)) == 1


def test_head_figure_draws_the_offdiagonal_entries_and_the_distance(run):
    fig = plotting.head_figure(run)
    ax1, axz, ax2 = _plot_axes(fig)
    for ax in (ax1, axz):
        lines = _lines(ax, "$E_")
        assert len(lines) == 2
        for ln in lines:
            j, r = int(ln.get_label()[4]) - 1, int(ln.get_label()[5]) - 1  # "$E_{jr}$"
            np.testing.assert_array_equal(ln.get_ydata(), run.E[:, j, r])
            np.testing.assert_array_equal(ln.get_xdata(), run.flow_time)
        assert "(follower, leader)" in next(ln.get_label() for ln in lines if ln.get_label()[4:6] == "21")
    dist = np.sqrt(((run.E - np.eye(2)) ** 2).sum(axis=(1, 2)))
    drawn = ax2.get_lines()[0].get_ydata()
    np.testing.assert_allclose(drawn, np.where(dist > 0, dist, np.nan), rtol=1e-15)
    assert ax2.get_yscale() == "log" and ax2.get_ylabel() == r"$\|E - I\|_F$"


def test_substitution_figure_draws_its_inputs(run):
    T = run.n_points
    sub = np.linspace(0.0, 2.0, T)
    acc = np.linspace(1.0, 3.0, T)
    acc1 = np.linspace(-1.0, 1.0, T)
    rates = np.stack([np.linspace(-1e-3, 1e-3, T), np.linspace(1e-4, 1e-2, T)], axis=1)
    rates_I = 2 * rates
    ratio, pred = np.linspace(0.1, 1.0, T), np.linspace(0.2, 1.0, T)
    fig = plotting.substitution_acceleration_figure(run, sub, acc, acc1, rates=rates, rates_identity=rates_I,
                                                    abs_ratio=ratio, abs_pred=pred)
    ax1, ax2, ax3, ax4 = _plot_axes(fig)
    np.testing.assert_array_equal(ax1.get_lines()[0].get_ydata(), np.where(sub > 0, sub, np.nan))
    np.testing.assert_array_equal(ax2.get_lines()[0].get_ydata(), acc)
    np.testing.assert_array_equal(ax2.get_lines()[1].get_ydata(), acc1)
    drawn = {ln.get_label(): ln.get_ydata() for ln in ax3.get_lines()}
    np.testing.assert_array_equal(drawn["along $v_1$, head $E(t)$"], rates[:, 0])
    np.testing.assert_array_equal(drawn["along $v_2$, $E$ reset to $I$"], rates_I[:, 1])
    np.testing.assert_array_equal(ax4.get_lines()[0].get_ydata(), ratio)
    np.testing.assert_array_equal(ax4.get_lines()[1].get_ydata(), pred)
    assert "substitution ratio" in ax1.get_title() and "acceleration factor" in ax2.get_title()
    assert "growth rates" in ax3.get_title() and "absolute speed ratio" in ax4.get_title()
    # without the optional inputs the lower panels say so
    fig = plotting.substitution_acceleration_figure(run, sub, acc)
    texts = [t.get_text() for ax in _plot_axes(fig)[2:] for t in ax.texts]
    assert "growth rates not given" in texts and "absolute speed ratio not given" in texts


def test_scaling_figure_draws_points_fit_and_theory():
    x = np.repeat([1.0, 2.0, 4.0, 8.0], 2)
    seed = np.tile([1, 2], 4)
    y = np.where(seed == 1, 3.0, 3.3) * x ** 2
    fit = {"slope": 2.0, "prefactor": 3.15, "ci_low": 1.9, "ci_high": 2.1}
    panel = {"x": x, "y": y, "seed": seed, "fit": fit, "theory": 2.0, "xlabel": "dimension d",
             "ylabel": "T1", "title": "T1 against d", "verdict": "theory 2 inside the 95% interval"}
    fig = plotting.scaling_figure([panel, {**panel, "title": "again"}])
    axes = _plot_axes(fig)
    assert len(axes) == 2 and [ax.get_title() for ax in axes] == ["T1 against d", "again"]
    ax = axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "dimension d" and ax.get_ylabel() == "T1"
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.column_stack([x, y]))
    gm = next(ln for ln in ax.get_lines() if ln.get_label() == "geometric mean")
    np.testing.assert_allclose(gm.get_ydata(), np.sqrt(3.0 * 3.3) * np.array([1, 2, 4, 8.0]) ** 2)
    fitted = next(ln for ln in ax.get_lines() if str(ln.get_label()).startswith("fit"))
    g = fitted.get_xdata()
    np.testing.assert_allclose(fitted.get_ydata(), 3.15 * g ** 2)
    assert "slope 2.000 [1.900, 2.100]" in fitted.get_label()
    assert any(t.get_text() == panel["verdict"] for t in ax.texts)


def test_phase_diagram_figure_images_are_the_fractions():
    ratios_alpha, ratios_eta, n = (1.5, 2.0, 3.0), (0.01, 0.1), 4
    counts = {"diverse": np.array([[4, 2, 1], [3, 2, 0]]), "collapsed": np.array([[0, 1, 1], [0, 0, 0]]),
              "vanishing": np.array([[0, 1, 0], [0, 0, 1]]), "incomplete": np.array([[0, 0, 2], [1, 2, 3]])}
    frozen = {"diverse": np.array([1, 0, 0]), "collapsed": np.array([3, 4, 2]),
              "vanishing": np.array([0, 0, 0]), "incomplete": np.array([0, 0, 2])}
    default = {"trainable": {"diverse": 6, "collapsed": 1, "vanishing": 1, "incomplete": 0},
               "frozen": {"diverse": 2, "collapsed": 6, "vanishing": 0, "incomplete": 0}}
    fig = plotting.phase_diagram_figure(ratios_alpha, ratios_eta, counts, frozen, n, default_counts=default,
                                        note="a note", alpha1=6.0)
    axes = _plot_axes(fig)
    assert len(axes) == len(GRID_OUTCOMES) + 1
    assert fig.get_suptitle() == "a note"
    for ax, oc in zip(axes[:-1], GRID_OUTCOMES, strict=True):
        assert ax.get_title() == f"fraction {oc}"
        img = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
        assert img.shape == (len(ratios_eta) + 2, len(ratios_alpha))
        np.testing.assert_array_equal(img[:2], counts[oc] / n)
        assert np.isnan(img[2]).all()  # the band between the grid and the frozen row
        np.testing.assert_array_equal(img[3], frozen[oc] / n)
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0.01", "0.1", "frozen"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1.5", "2", "3"]
    bars = axes[-1].patches
    assert len(bars) == 2 * len(GRID_OUTCOMES)
    heights = np.array([b.get_height() for b in bars]).reshape(len(GRID_OUTCOMES), 2)
    np.testing.assert_allclose(heights, [[6 / 8, 2 / 8], [1 / 8, 6 / 8], [0, 0], [1 / 8, 0]])
    assert axes[-1].get_title() == "default parameters, 8 seeds"


SWEEP = {"alpha1": np.array([4.0, 4.0, 5.0, 5.0, 4.0, 5.0]),
         "eta_E_ratio": np.array([0.1, 0.1, 0.1, 0.1, 1.0, 1.0]),
         "outcome": np.array(["diverse", "collapsed", "diverse", "diverse", "incomplete", "collapsed"]),
         "run_id": np.array(list("abcdef"))}


def test_sweep_phase_diagram_uses_the_same_heatmap():
    fig = plotting.phase_diagram(SWEEP, "alpha1", "eta_E_ratio", note="6 runs")
    axes = _plot_axes(fig)
    assert len(axes) == len(GRID_OUTCOMES)
    expected = {"diverse": [[0.5, 1.0], [0.0, 0.0]], "collapsed": [[0.5, 0.0], [0.0, 1.0]],
                "vanishing": [[0.0, 0.0], [0.0, 0.0]], "incomplete": [[0.0, 0.0], [1.0, 0.0]]}
    for ax, oc in zip(axes, GRID_OUTCOMES, strict=True):
        assert ax.get_title() == f"fraction {oc}"
        np.testing.assert_array_equal(ax.images[0].get_array(), expected[oc])
        assert ax.get_xlabel() == r"$\alpha_1$" and ax.get_ylabel() == r"$\eta_E / \eta$"
    assert "6 runs" in fig.get_suptitle()


def test_sweep_phase_diagram_in_one_key_draws_curves():
    fig = plotting.phase_diagram(SWEEP, "eta_E_ratio")
    (ax,) = _plot_axes(fig)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == set(GRID_OUTCOMES)
    np.testing.assert_allclose(lines["diverse"].get_ydata(), [3 / 4, 0.0])
    np.testing.assert_allclose(lines["collapsed"].get_ydata(), [1 / 4, 1 / 2])
    np.testing.assert_allclose(lines["incomplete"].get_ydata(), [0.0, 1 / 2])
    assert lines["diverse"].get_color() == plotting.OUTCOME_COLORS["diverse"]


def test_sweep_axes_default_to_the_grid_keys_and_say_what_is_pooled():
    manifest = {"spec": {"grid": [["alpha1", [4.0, 5.0]], ["eta_E_ratio", [0.1, 1.0]], ["d", [8, 16]]]},
                "n_runs": 12}
    x, y, note = plotting.sweep_axes(manifest, SWEEP)
    assert (x, y) == ("alpha1", "eta_E_ratio")
    assert note == "6 of 12 runs; pooled over d"
    assert plotting.sweep_axes(manifest, SWEEP, "ETA-E-RATIO")[:2] == ("eta_E_ratio", "alpha1")
    from theory_sim.sweep import SweepError

    with pytest.raises(SweepError, match="not a column"):
        plotting.sweep_axes(manifest, SWEEP, "d")


def test_sgd_figure_draws_population_and_sgd_bands(run):
    runs = [synthetic_run(seed=s) for s in (2, 3)]
    fig = plotting.sgd_figure(run, {64: runs}, leader=0, follower=1, note="n")
    axes = _plot_axes(fig)
    assert len(axes) == 4
    pop = next(ln for ln in axes[0].get_lines() if ln.get_label() == "population (exact)")
    np.testing.assert_array_equal(pop.get_ydata(), np.abs(run.alignment[:, 0, 0]))
    mean = next(ln for ln in axes[1].get_lines() if str(ln.get_label()).startswith("SGD, batch 64"))
    expected = np.mean([np.abs(r.alignment[:, 1, 1]) for r in runs], axis=0)
    np.testing.assert_allclose(mean.get_ydata(), expected)
    head = next(ln for ln in axes[2].get_lines() if ln.get_label() == "population (exact)")
    np.testing.assert_array_equal(head.get_ydata(), run.E[:, 1, 0])
    assert axes[3].get_xlabel() == "batch size N"


def test_many_neurons_figure_counts_neurons_per_feature():
    r = synthetic_run(m=3, L=3)
    fig = plotting.many_neurons_figure([r], ["trainable"], r, [60, 150])
    axes = _plot_axes(fig)
    assert axes[0].get_title() == "trainable"
    held = (np.abs(r.alignment) >= 0.9)
    for l in range(3):
        ln = next(ln for ln in axes[0].get_lines() if str(ln.get_label()).startswith(f"$v_{l + 1}$"))
        np.testing.assert_array_equal(ln.get_ydata(), held[:, :, l].sum(axis=1))
    heat = [ax for ax in axes if ax.images]
    assert len(heat) == 2
    dev = np.abs(r.E - np.eye(3))
    floor = dev[[60, 150]].max() * 1e-3
    np.testing.assert_array_equal(heat[0].images[0].get_array(), np.maximum(dev[60], floor))


def test_one_outcome_vocabulary():
    assert tuple(plotting.OUTCOME_COLORS) == OUTCOMES == tuple(plotting.OUTCOME_CMAPS)
