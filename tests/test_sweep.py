"""theory-sim sweep: grid parsing, the table, resume, serial vs Dask, the CLI's errors."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from theory_sim import ModelParams, TrainParams, analysis, simulate
from theory_sim import sweep as sw
from theory_sim.cli import main

# a small, fast sweep: 2 x 2 grid points x 3 seeds = 12 runs of at most 400 steps
ARGS = ["--grid", "alpha1=4,5", "--grid", "eta_E_ratio=0.1,1", "--seeds", "3",
        "--d", "16", "--alpha", "4,2", "--eta", "1", "--max-flow-time", "400"]


def small_spec():
    return sw.build_spec(base={"d": "16", "alpha": "4,2", "eta": "1", "max_flow_time": "400"},
                         grid=[sw.parse_grid_arg("alpha1=4,5"),
                               sw.parse_grid_arg("eta_E_ratio=0.1,1")],
                         seeds="3")


def rows_of(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def serial_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "sweep"
    res = sw.run_sweep(small_spec(), out, executor="serial")
    assert res.complete and res.n_done == 12
    return (out / sw.TABLE).read_bytes()


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    import logging

    cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        yield cl
    finally:
        cl.close()


# ---------------------------------------------------------------- grid specs

@pytest.mark.parametrize("text, key, values", [
    ("alpha1=4,5,6", "alpha1", (4.0, 5.0, 6.0)),
    ("eta_E_ratio=0.01, 0.1", "eta_E_ratio", (0.01, 0.1)),
    ("eta-e-ratio=1", "eta_E_ratio", (1.0,)),
    ("d=64,1e2", "d", (64, 100)),
    ("head=offdiag,frozen", "head", ("offdiag", "frozen")),
    ("steps=none,100", "steps", (None, 100)),
    ("alpha1=lin:4:8:5", "alpha1", (4.0, 5.0, 6.0, 7.0, 8.0)),
    ("eta_E_ratio=log:0.01:1:3", "eta_E_ratio", (0.01, 0.1, 1.0)),
])
def test_grid_arg(text, key, values):
    k, v = sw.parse_grid_arg(text)
    assert k == key
    assert v == pytest.approx(values) if isinstance(values[0], float) else v == values


@pytest.mark.parametrize("text, message", [
    ("alpha1", "expected KEY=V1,V2"),
    ("=1,2", "missing the key"),
    ("gamma=1", "unknown sweep key"),
    ("alpha1=", "has no values"),
    ("alpha1=4,x", "must be a number"),
    ("d=1.5", "must be an integer"),
    ("alpha1=4,4", "twice"),
    ("seed=1,2", "own parameter, seeds"),
    ("batch=8", "sgd engine"),
    ("head=none", "one of"),
    ("alpha=6,3", "one entry at a time"),
    ("eta=log:0:1:3", "START, STOP > 0"),
    ("eta=lin:1:2:x", "lin:START:STOP:N"),
    ("alpha1=lin:4:8", r"missing N, the number of points"),
    ("alpha1=log:4", "missing STOP and N"),
    ("alpha1=lin:", "missing START:STOP:N"),
])
def test_bad_grid_arg(text, message):
    with pytest.raises(sw.SweepError, match=message):
        sw.parse_grid_arg(text)


def test_spaced_values_are_the_round_numbers():
    _, values = sw.parse_grid_arg("eta_E_ratio=lin:0.1:0.3:3")
    assert [repr(v) for v in values] == ["0.1", "0.2", "0.3"]
    _, values = sw.parse_grid_arg("eta=log:0.001:0.1:3")
    assert [repr(v) for v in values] == ["0.001", "0.01", "0.1"]


def test_the_table_stores_eta_E_ratio_as_written(tmp_path):
    """0.03 * 0.01 / 0.01 is 0.029999999999999995: the column holds the ratio as given,
    in both the serial path and a Dask task (``run_chunk``)."""
    spec = sw.build_spec(base={"d": "16", "eta": "0.01", "steps": "20"},
                         grid=[("eta_E_ratio", (0.03, 0.7))], seeds="1")
    assert 0.03 * 0.01 / 0.01 != 0.03  # the rounding the column must not show
    res = sw.run_sweep(spec, tmp_path / "s", executor="serial")
    assert res.complete
    _, rows = sw.read_table(tmp_path / "s" / sw.TABLE)
    assert [r["eta_E_ratio"] for r in rows] == ["0.03", "0.7"]
    cells = sw.expand(spec)
    cols = sw.columns(cells)
    _, task_rows = sw.run_chunk(sw.execute._payload(cells), cols)
    assert [r["eta_E_ratio"] for _, r in task_rows] == ["0.03", "0.7"]
    assert [r for _, r in task_rows] == rows


def test_numbers_are_stored_as_written(tmp_path, capsys):
    """0.03 from a TOML config, a command-line fixed value, a lin grid and a list is 0.03 in the
    table; eta_E = eta_E_ratio * eta too (0.03 * 0.7 is 0.021, not 0.020999999999999998)."""
    assert repr(0.03 * 0.7) != "0.021" and repr(0.03 * 0.003) != "9e-05"  # the noise not to show
    config = tmp_path / "sweep.toml"
    config.write_text("seeds = [1]\n[base]\ntol = 0.03\nmax_flow_time = 0.3\n"
                      "[grid]\nalpha2 = [0.03, 0.7]\n")
    out = tmp_path / "s"
    code = main(["sweep", "--config", str(config), "--grid", "eta=lin:0.01:0.05:5", "--grid",
                 "eta_E_ratio=0.003,0.7", "--sigma", "0.03", "--pi", "0.97,0.03", "--d", "8",
                 "--serial", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = rows_of(out / sw.TABLE)
    assert len(rows) == 20
    for column in ("tol", "sigma", "pi2"):
        assert {r[column] for r in rows} == {"0.03"}
    assert {r["max_flow_time"] for r in rows} == {"0.3"}  # at least one step of every eta
    assert {r["alpha2"] for r in rows} == {"0.03", "0.7"}
    assert {r["eta"] for r in rows} == {"0.01", "0.02", "0.03", "0.04", "0.05"}
    assert {r["eta_E_ratio"] for r in rows} == {"0.003", "0.7"}
    product = {(r["eta"], r["eta_E_ratio"]): r["eta_E"] for r in rows}
    assert product[("0.03", "0.7")] == "0.021" and product[("0.03", "0.003")] == "9e-05"
    for (eta, ratio), eta_E in product.items():  # the value the run used, exact to 15 digits
        assert float(eta_E) == pytest.approx(float(eta) * float(ratio), rel=1e-15, abs=0)


def test_seeds():
    assert sw.parse_seeds("3") == (0, 1, 2)
    assert sw.parse_seeds("5:8") == (5, 6, 7)
    assert sw.parse_seeds("4,1") == (4, 1)
    assert sw.parse_seeds(2) == (0, 1)
    assert sw.parse_seeds([7, 9]) == (7, 9)
    for bad in ("0", "x", "3:1", "1,1", "-1,2", True):
        with pytest.raises(sw.SweepError):
            sw.parse_seeds(bad)


def test_keys_are_generated_from_the_parameter_registry(monkeypatch):
    from theory_sim.params import PARAMETERS
    from theory_sim.sweep import spec

    scalars = [p.name for p in PARAMETERS if p.sweepable and p.kind != "floats"]
    assert [k for k in sw.KEYS if sw.KEYS[k].target != "sweep"] == scalars
    assert {k for k in sw.KEYS if sw.KEYS[k].target == "sweep"} == {"eta_E_ratio", "head_tol"}
    assert sw.VECTOR_KEYS == tuple(p.name for p in PARAMETERS if p.kind == "floats")
    assert {p.name for p in PARAMETERS if not p.sweepable} <= set(sw.NOT_GRID)
    for p in PARAMETERS:
        if p.name in sw.KEYS:
            assert (sw.KEYS[p.name].kind, sw.KEYS[p.name].target) == (p.kind, p.owner)
            assert sw.KEYS[p.name].nullable == (p.default is None)
    # a parameter made sweepable in params is a sweep key, with no edit of sweep/
    batch = next(p for p in PARAMETERS if p.name == "batch")
    patched = tuple(dataclasses.replace(p, sweepable=True) if p is batch else p for p in PARAMETERS)
    monkeypatch.setattr(spec, "PARAMETERS", patched)
    keys = spec._keys()
    assert keys["batch"].kind is int and keys["batch"].target == "train"


def test_a_new_parameter_key_gets_a_column_when_it_is_set(monkeypatch):
    """A key that is not one of the format's columns (here ``record``, made a key; not ``batch``,
    which only the SGD engines read and a sweep refuses) is a column of the tables whose runs
    set it, holding the value of each run."""
    from theory_sim.sweep import spec, table

    keys = dict(sw.KEYS, record=sw.Key("record", int, "train", "points kept"))
    monkeypatch.setattr(spec, "KEYS", keys)
    monkeypatch.setattr(table, "KEYS", keys)
    plain = sw.expand(sw.build_spec(base={"d": "16"}, grid=[("alpha1", (4.0, 5.0))], seeds="1"))
    assert "record" not in sw.columns(plain)  # the earlier tables keep their columns
    cells = sw.expand(sw.build_spec(base={"d": "16", "steps": "3"}, grid=[("record", (8, 16))], seeds="1"))
    cols = sw.columns(cells)
    assert cols[cols.index("head_tol") + 1] == "record"
    _, rows = sw.run_chunk(sw.execute._payload(cells), cols)
    assert [r["record"] for _, r in rows] == ["8", "16"]


def test_a_key_that_only_another_engine_reads_is_refused():
    with pytest.raises(sw.SweepError, match="batch only affects the sgd and sgd-fast engine"):
        sw.spec._check_engine_options({"batch": 8}, {"alpha1": (4.0, 5.0)})  # batch: not a sweep key yet
    with pytest.raises(sw.SweepError, match="rtol only affects the flow engine"):
        sw.build_spec(grid=[("rtol", (1e-6, 1e-7))], seeds="1")
    spec = sw.build_spec(base={"engine": "flow"}, grid=[("rtol", (1e-6, 1e-7))], seeds="1")
    assert spec.n_runs == 2  # the flow engine reads it: accepted (not run here)
    mixed = sw.build_spec(grid=[("engine", ("population", "flow")), ("rtol", (1e-6, 1e-7))], seeds="1")
    assert mixed.n_runs == 4


def test_the_engines_are_those_of_the_batched_kernel(monkeypatch):
    from theory_sim import ensemble
    from theory_sim.engines import ENGINES

    assert sw.batched_engines() == tuple(e for e in ENGINES if e in ensemble.BATCHED_ENGINES)
    assert sw.parse_value("engine", "population") == "population"
    for name in ENGINES:
        if name not in ensemble.BATCHED_ENGINES:
            with pytest.raises(sw.SweepError, match="batched kernel"):
                sw.parse_grid_arg(f"engine=population,{name}")
    with pytest.raises(sw.SweepError, match="one of population"):
        sw.parse_value("engine", "gpu")
    monkeypatch.setattr(ensemble, "BATCHED_ENGINES", (*ensemble.BATCHED_ENGINES, "sgd"))
    assert sw.parse_value("engine", "sgd") == "sgd"  # read from ensemble, not a copy


def test_default_pi_is_the_params_rule():
    from theory_sim.params import uniform_pi

    cells = sw.expand(sw.build_spec(base={"alpha": "6,3,1", "d": "16"}, grid=[("alpha1", (5.0, 7.0))]))
    assert all(c.model.pi == uniform_pi(3) == ModelParams(alpha=(6, 3, 1)).pi for c in cells)
    cells = sw.expand(sw.build_spec(base={"d": "16"}, grid=[("pi2", (0.5,))]))
    assert cells[0].model.pi == (0.5, 0.5)  # the other entries start from the default


@pytest.mark.parametrize("seeds", ["99999999999999999999", "1:99999999999", "0:1000001", 10**20,
                                   "9223372036854775807"])
def test_too_many_seeds_are_refused_before_they_are_made(seeds):
    with pytest.raises(sw.SweepError, match=f"at most {sw.MAX_RUNS} runs"):
        sw.parse_seeds(seeds)


def test_seeds_beyond_the_largest_seed_are_refused():
    with pytest.raises(sw.SweepError, match="seeds must be integers in"):
        sw.parse_seeds("9223372036854775807:9223372036854775809")


@pytest.mark.parametrize("text", ["alpha1=lin:4:8:100000000", "eta=log:1e-3:1:10001",
                                  "alpha1=lin:4:8:1e30"])
def test_too_many_grid_points_are_refused_before_they_are_made(text):
    with pytest.raises(sw.SweepError, match=f"the limit is {sw.MAX_GRID_POINTS} points"):
        sw.parse_grid_arg(text)


def test_too_many_runs_are_refused_before_expanding():
    grid = [("alpha1", tuple(range(1, 1001))), ("sigma", tuple(range(1, 1001)))]
    with pytest.raises(sw.SweepError, match=f"2000000 runs .* the limit is {sw.MAX_RUNS}"):
        sw.build_spec(grid=grid, seeds="2")
    spec = sw.SweepSpec(grid=tuple(grid), seeds=(0, 1))  # built by hand: expand checks too
    with pytest.raises(sw.SweepError, match="2000000 runs"):
        sw.expand(spec)


@pytest.mark.parametrize("bad, message", [("a" * 300, "File name too long"), ("x\x00y", "NUL byte")])
def test_paths_the_system_cannot_look_up_are_one_line_errors(bad, message, tmp_path):
    spec = sw.build_spec(base={"d": "16", "steps": "3"}, seeds="1")
    with pytest.raises(sw.SweepError, match=message) as err:
        sw.run_sweep(spec, tmp_path / bad, executor="serial")
    assert err.value.param == "out" and "\n" not in str(err.value)
    with pytest.raises(sw.SweepError, match=message):
        sw.load_sweep(tmp_path / bad)
    assert list(tmp_path.iterdir()) == []


def test_alpha_whose_sixth_power_overflows_is_refused():
    """``pi * alpha^6`` (the kernels' lam) must be finite: compared with numpy's own float64."""
    from theory_sim.model import model_constants
    from theory_sim.params import MAX_ALPHA, ParamError

    above = np.nextafter(MAX_ALPHA, np.inf) * (1 + 1e-12)
    with np.errstate(over="ignore"):
        assert np.isinf(np.float64(above) ** 6)
    for alpha in ((above, 1.0), (3.0, 1e60)):
        with pytest.raises(ParamError, match=r"alpha\[[01]\] must be at most 2.376e\+51"):
            ModelParams(d=8, alpha=alpha)
    with np.errstate(over="raise"):
        lam = model_constants(ModelParams(d=8, alpha=(MAX_ALPHA, 1.0), pi=(1.0, 0.0)))[0]
    assert np.all(np.isfinite(lam))


def test_expand_resolves_every_cell():
    cells = sw.expand(small_spec())
    assert len(cells) == 12
    assert [c.index for c in cells] == list(range(12))
    c = cells[-1]  # last grid point (alpha1=5, eta_E_ratio=1), last seed
    assert c.cell == 3 and c.train.seed == 2
    assert c.model == ModelParams(d=16, alpha=(5.0, 2.0))
    assert c.train.eta == 1.0 and c.train.eta_E == 1.0 and c.train.max_flow_time == 400.0
    assert len({c.run_id for c in cells}) == 12


def test_config_file_equals_command_line(tmp_path):
    cfg = tmp_path / "grid.toml"
    cfg.write_text('seeds = 3\n[base]\nd = 16\nalpha = [4, 2]\neta = 1\nmax_flow_time = 400\n'
                   '[grid]\nalpha1 = [4, 5]\neta_E_ratio = "0.1,1"\n')
    spec = sw.build_spec(config=sw.read_config(cfg))
    assert spec == small_spec()
    # the command line wins over the config
    spec2 = sw.build_spec(config=sw.read_config(cfg), grid=[sw.parse_grid_arg("alpha1=6")],
                          seeds="1")
    assert dict(spec2.grid)["alpha1"] == (6.0,) and spec2.seeds == (0,)


# ---------------------------------------------------------------- the CLI's errors

def _bad(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("theory-sim: error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_bad_grid_spec_exits_2_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert "expected KEY=V1,V2" in _bad(capsys, ["sweep", "--grid", "alpha1", "--out", out])
    assert "unknown sweep key" in _bad(capsys, ["sweep", "--grid", "nope=1", "--out", out])
    assert "must be a number" in _bad(capsys, ["sweep", "--grid", "eta=fast", "--out", out])
    assert "--seeds" in _bad(capsys, ["sweep", "--grid", "seed=1,2", "--out", out])
    # a value that ModelParams rejects, named with its grid point
    line = _bad(capsys, ["sweep", "--grid", "k=1,4", "--d", "8", "--out", out, "--serial"])
    assert "k must be" in line and "(at k=1)" in line
    assert "eta_E or eta_E_ratio" in _bad(capsys, ["sweep", "--grid", "eta_E_ratio=1", "--eta-E",
                                                   "0.1", "--out", out])
    assert "only 2 features" in _bad(capsys, ["sweep", "--grid", "alpha3=1", "--out", out,
                                              "--serial"])
    assert "seeds must be" in _bad(capsys, ["sweep", "--seeds", "0", "--out", out])
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[grid\n")
    assert "not valid TOML" in _bad(capsys, ["sweep", "--config", str(cfg), "--out", out])
    cfg.write_text("[grids]\nd = [8]\n")
    assert "unknown entries" in _bad(capsys, ["sweep", "--config", str(cfg), "--out", out])
    assert "cannot read" in _bad(capsys, ["sweep", "--config", str(tmp_path / "no.toml"),
                                          "--out", out])
    assert "need the dask executor" in _bad(capsys, ["sweep", "--serial", "--workers", "2",
                                                     "--out", out])
    assert not (tmp_path / "s").exists()  # nothing written for a bad spec


def test_out_holding_another_sweep_or_other_files_is_refused(tmp_path, capsys, serial_table):
    out = tmp_path / "s"
    assert main(["sweep", *ARGS, "--out", str(out), "--serial", "--quiet"]) == 0
    capsys.readouterr()
    before = (out / sw.TABLE).read_bytes()
    assert before == serial_table
    line = _bad(capsys, ["sweep", *ARGS, "--seeds", "4", "--out", str(out), "--serial"])
    assert "holds a different sweep" in line
    assert (out / sw.TABLE).read_bytes() == before  # untouched
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert "not a theory-sim sweep" in _bad(capsys, ["sweep", *ARGS, "--out", str(other)])


# ---------------------------------------------------------------- the table

def test_rows_equal_simulate_one_at_a_time(serial_table, tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(serial_table)
    rows = rows_of(path)
    assert len(rows) == 12 and len({r["run_id"] for r in rows}) == 12
    cols = sw.columns(sw.expand(small_spec()))
    assert list(rows[0]) == cols
    for r in rows[::5]:  # an independent check of a few rows
        model = ModelParams(d=16, alpha=(float(r["alpha1"]), 2.0))
        train = TrainParams(eta=1.0, eta_E=float(r["eta_E_ratio"]), seed=int(r["seed"]),
                            max_flow_time=400.0)
        run = simulate(model, dataclasses.replace(train, record=train.max_steps + 2))
        pt = analysis.phase_times(run, threshold=0.9)
        for t in ("T1", "T2", "T3", "T4"):
            want = getattr(pt, t)
            assert r[t] == ("" if want is None else str(want))
        assert r["leader"] == ("" if pt.leader is None else str(pt.leader + 1))
        assert r["follower"] == ("" if pt.follower is None else str(pt.follower + 1))
        assert r["status"] == run.status
        c = np.abs(run.alignment[-1])
        got = np.array([[float(r[f"c_{j}_{l}"]) for l in (1, 2)] for j in (1, 2)])
        np.testing.assert_allclose(got, c, rtol=1e-12)
        peak = analysis.peak_offdiag(run)
        assert float(r["E_peak_2_1"]) == peak[1, 0] and float(r["E_peak_1_2"]) == peak[0, 1]
        want = analysis.outcome(run)
        if run.status == "max_steps":
            want = "incomplete"
        assert r["outcome"] == want


def test_serial_and_distributed_give_the_same_table(serial_table, cluster, tmp_path):
    out = tmp_path / "dask"
    res = sw.run_sweep(small_spec(), out, scheduler=cluster.scheduler_address, chunk_size=2)
    assert res.complete and res.n_new == 12
    assert (out / sw.TABLE).read_bytes() == serial_table
    manifest = json.loads((out / sw.MANIFEST).read_text())
    assert manifest["complete"] and manifest["finished"] is not None
    assert manifest["sessions"][-1]["executor"] == "dask"
    assert manifest["sessions"][-1]["workers"] == 2
    assert manifest["spec"] == small_spec().to_dict()
    assert manifest["versions"]["distributed"]


@pytest.mark.parametrize("executor", ["serial", "dask"])
def test_resume_after_stopping_runs_only_the_missing_rows(executor, serial_table, cluster, tmp_path):
    out = tmp_path / "resume"
    kw = {"scheduler": cluster.scheduler_address} if executor == "dask" else {}
    first = sw.run_sweep(small_spec(), out, executor=executor, chunk_size=3, max_chunks=2, **kw)
    assert not first.complete and first.n_done == 6 and first.status == "stopped"
    rows = rows_of(out / sw.TABLE)
    assert len(rows) == 6  # a consistent partial table
    manifest = json.loads((out / sw.MANIFEST).read_text())
    assert manifest["complete"] is False and manifest["finished"] is None
    second = sw.run_sweep(small_spec(), out, executor=executor, chunk_size=3, **kw)
    assert second.complete and second.n_new == 6
    assert (out / sw.TABLE).read_bytes() == serial_table  # no duplicates, grid order
    third = sw.run_sweep(small_spec(), out, executor=executor, **kw)
    assert third.n_new == 0 and (out / sw.TABLE).read_bytes() == serial_table
    assert len(json.loads((out / sw.MANIFEST).read_text())["sessions"]) == 3


def test_ctrl_c_keeps_a_consistent_table(serial_table, tmp_path):
    out = tmp_path / "ctrlc"
    calls = []

    def progress(done, total):
        calls.append(done)
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(small_spec(), out, executor="serial", chunk_size=4, progress=progress)
    rows = rows_of(out / sw.TABLE)
    assert 4 <= len(rows) < 12
    full = {r["run_id"]: r for r in csv.DictReader(serial_table.decode().splitlines())}
    assert all(full[r["run_id"]] == r for r in rows)  # complete, correct rows only
    manifest = json.loads((out / sw.MANIFEST).read_text())
    assert manifest["sessions"][-1]["status"] == "interrupted"
    sw.run_sweep(small_spec(), out, executor="serial")
    assert (out / sw.TABLE).read_bytes() == serial_table


def test_failed_task_keeps_a_consistent_table(serial_table, tmp_path, monkeypatch):
    """A worker killed too often fails its task: the rows finished so far are saved."""

    class FlakyRunner:
        n_threads = 2

        def __init__(self, *a):
            pass

        def describe(self):
            return {"scheduler": "fake"}

        def run(self, payloads, cols):
            yield sw.run_chunk(payloads[0], cols)[1]
            raise sw.SweepFailed("KilledWorker: worker died")

        def close(self):
            pass

    monkeypatch.setattr(sw.execute, "_DaskRunner", FlakyRunner)
    out = tmp_path / "flaky"
    with pytest.raises(sw.SweepFailed):
        sw.run_sweep(small_spec(), out, chunk_size=5)
    assert len(rows_of(out / sw.TABLE)) == 5
    assert json.loads((out / sw.MANIFEST).read_text())["sessions"][-1]["status"] == "failed"
    monkeypatch.undo()
    sw.run_sweep(small_spec(), out, executor="serial")
    assert (out / sw.TABLE).read_bytes() == serial_table


# ---------------------------------------------------------------- CLI end to end, plot

def test_cli_sweep_then_plot(tmp_path, capsys, serial_table):
    out = tmp_path / "cli"
    assert main(["sweep", *ARGS, "--out", str(out), "--serial", "--plot", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "12 of 12 runs" in text and "outcomes:" in text
    assert (out / sw.TABLE).read_bytes() == serial_table
    assert (out / sw.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = tmp_path / "pd.png"
    assert main(["plot-sweep", str(out), "--x", "eta_E_ratio", "--y", "alpha1",
                 "--out", str(target)]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert "not a theory-sim sweep" in _bad(capsys, ["plot-sweep", str(tmp_path)])


def test_cli_starts_and_stops_its_own_local_cluster(tmp_path, capsys, serial_table):
    out = tmp_path / "local"
    argv = ["sweep", *ARGS, "--out", str(out), "--workers", "2", "--threads-per-worker", "1",
            "--quiet"]
    assert main(argv) == 0
    assert (out / sw.TABLE).read_bytes() == serial_table
    session = json.loads((out / sw.MANIFEST).read_text())["sessions"][-1]
    assert session["scheduler"] == "local" and session["workers"] == 2


def test_unreachable_scheduler_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sw.execute, "CONNECT_TIMEOUT", "1s")
    out = tmp_path / "s"
    line = _bad(capsys, ["sweep", *ARGS, "--out", str(out), "--scheduler", "tcp://127.0.0.1:1"])
    assert "cannot connect" in line
    assert not out.exists()


def test_phase_diagram_fractions():
    from matplotlib.figure import Figure

    from theory_sim.plotting import outcome_fractions, phase_diagram

    table = {"alpha1": np.array([4.0, 4.0, 5.0, 5.0]), "eta_E_ratio": np.array([0.1, 0.1, 0.1, 1.0]),
             "outcome": np.array(["diverse", "collapsed", "diverse", "incomplete"])}
    xs, ys, counts, frac = outcome_fractions(table, "alpha1", "eta_E_ratio")
    assert xs == [4.0, 5.0] and ys == [0.1, 1.0]
    np.testing.assert_array_equal(counts, [[2, 1], [0, 1]])
    np.testing.assert_array_equal(frac[0], [[0.5, 1.0], [np.nan, 0.0]])  # diverse
    np.testing.assert_array_equal(frac[2], [[0.0, 0.0], [np.nan, 1.0]])  # incomplete
    assert isinstance(phase_diagram(table, "alpha1", "eta_E_ratio"), Figure)
    assert isinstance(phase_diagram(table, "alpha1"), Figure)


@pytest.mark.parametrize("option", ["workers", "threads_per_worker"])
def test_a_huge_local_cluster_is_refused_before_it_starts(option, tmp_path):
    spec = sw.build_spec(base={"d": "16", "steps": "3"}, seeds="1")
    with pytest.raises(sw.SweepError, match=f"{option} must be at most") as err:
        sw.run_sweep(spec, tmp_path / "s", executor="dask", **{option: 10**20})
    assert err.value.param == option and not (tmp_path / "s").exists()
