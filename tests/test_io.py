"""Saving and loading runs (theory_sim.io): round trip and one-line errors for bad files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import theory_sim as ts
from theory_sim import io as tio
from theory_sim.io import RunFileError

ARRAYS = ("steps", "alignment", "norms", "E", "loss", "rho", "gram", "W0", "W", "E_final")


@pytest.fixture(scope="module")
def run():
    model = ts.ModelParams(d=8, P=6, k=3, alpha=(3.0, 2.0), m=3, features="random", split="half")
    return ts.simulate(model, ts.TrainParams(eta=0.02, steps=120, record=40, seed=7, head="full"))


@pytest.fixture
def saved(run, tmp_path):
    return ts.save_run(run, tmp_path / "run", summary={"hello": np.float64(1.5), "a": np.arange(3)})


def assert_same_run(a, b):
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.config == b.config
    assert (a.status, a.message, a.elapsed) == (b.status, b.message, b.elapsed)


def test_round_trip_keeps_every_array_and_the_config(run, saved):
    assert (saved / tio.TRAJECTORY).is_file() and (saved / tio.SUMMARY).is_file()
    back = ts.load_run(saved)
    assert_same_run(run, back)
    assert_same_run(run, ts.load_run(saved / tio.TRAJECTORY))   # the file itself works too
    assert back.config["train"]["seed"] == 7 and back.config["version"] == ts.__version__
    assert back.config["model"]["alpha"] == [3.0, 2.0]
    assert json.loads((saved / tio.SUMMARY).read_text()) == {"hello": 1.5, "a": [0, 1, 2]}
    # a reloaded config rebuilds the same parameters
    assert ts.ModelParams(**back.config["model"]) == ts.ModelParams(**run.config["model"])
    assert ts.TrainParams(**back.config["train"]) == ts.TrainParams(**run.config["train"])
    assert run.events is not None and back.events.keys() == run.events.keys()
    for name, value in run.events.items():
        np.testing.assert_array_equal(back.events[name], value, err_msg=name)


def test_saving_leaves_no_temporary_files(saved):
    assert sorted(p.name for p in saved.iterdir()) == sorted([tio.TRAJECTORY, tio.SUMMARY])


def test_saving_over_an_existing_run_replaces_it(run, saved):
    model = ts.ModelParams(d=5, P=4, k=2, m=2)
    other = ts.simulate(model, ts.TrainParams(steps=3, seed=2))
    ts.save_run(other, saved)
    assert_same_run(other, ts.load_run(saved))


def assert_one_line_error(path, *fragments):
    with pytest.raises(RunFileError) as info:
        ts.load_run(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(saved, fraction):
    path = saved / tio.TRAJECTORY
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    assert_one_line_error(path, str(path))


def test_file_missing_its_last_byte(saved):
    path = saved / tio.TRAJECTORY
    path.write_bytes(path.read_bytes()[:-1])
    assert_one_line_error(path)


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, x=np.arange(3), y=np.eye(2))
    assert_one_line_error(path, "not a theory-sim run")


def test_npz_with_foreign_metadata(tmp_path):
    path = tmp_path / "meta.npz"
    np.savez(path, meta=np.array(json.dumps({"format": "something-else", "format_version": 1})))
    assert_one_line_error(path, "not a theory-sim run")
    np.savez(path, meta=np.array("{not json"))
    assert_one_line_error(path)


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "trajectory.npz"
    path.write_text("this is not a zip archive\n" * 10)
    assert_one_line_error(path, str(path))
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / tio.TRAJECTORY).write_bytes(b"\x00\x01\x02")
    assert_one_line_error(directory)


def _rewrite_meta(path, **changes):
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    meta = json.loads(str(data.pop("meta")))
    meta.update(changes)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **data)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_other_format_version(saved, version):
    path = saved / tio.TRAJECTORY
    _rewrite_meta(path, format_version=version)
    assert_one_line_error(path, "version")


def test_rewritten_file_with_the_right_version_still_loads(run, saved):
    """Control for the test above: the rewrite itself does not break the file."""
    _rewrite_meta(saved / tio.TRAJECTORY, format_version=tio.FORMAT_VERSION)
    assert_same_run(run, ts.load_run(saved))


def test_missing_arrays_and_bad_status(saved):
    path = saved / tio.TRAJECTORY
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    np.savez_compressed(path, **{k: v for k, v in data.items() if k != "loss"})
    assert_one_line_error(path, "loss")
    np.savez_compressed(path, **data)
    _rewrite_meta(path, status="exploded")
    assert_one_line_error(path)


def test_missing_file_or_directory(tmp_path):
    assert_one_line_error(tmp_path / "nowhere.npz", "no such")
    assert_one_line_error(tmp_path, "no such")   # a directory without trajectory.npz


def test_corrupted_member_is_a_run_file_error(saved):
    """A byte flipped inside the compressed data (the zip directory intact)."""
    path = saved / tio.TRAJECTORY
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("alignment.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for off in range(start + 10, start + min(info.compress_size, 200), 7):
        data[off] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_one_line_error(path)
