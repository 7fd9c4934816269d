"""``theory-sim sweep`` against a real multi-process Dask cluster on the loopback interface.

A ``dask scheduler`` and two ``dask worker`` processes are started as separate
processes bound to 127.0.0.1; the sweep runs against them through ``--scheduler``;
one worker is killed (SIGKILL) while the sweep is under way. The table must come out
complete and identical, row for row, to a ``--serial`` run of the same grid.
Skipped when dask[distributed] is not installed. Bounded: every wait has a timeout
and every process started here is killed at the end.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

BIN = Path(sys.executable).parent
DASK = BIN / "dask"
SCRIPT = BIN / "theory-sim"
HOST = "127.0.0.1"
GRID = ["--grid", "alpha1=4,5,6,8", "--seeds", "6", "--d", "256", "--eta", "2e-3", "--max-flow-time", "4000",
        "--chunk-size", "1", "--quiet"]
"""24 runs of about 0.5-1 s each (2 million steps), one per task: long enough to kill a worker
mid-sweep even on an idle machine (the table is written every 2 s)."""
N_RUNS = 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _wait(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for p in procs:
            if p.poll() is not None:
                out = p.stdout.read() if p.stdout else ""
                pytest.fail(f"{what}: a process exited early ({p.args[:2]}): {out[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def cluster(tmp_path):
    """``(address, scheduler, [worker1, worker2])``: three processes on 127.0.0.1."""
    if not DASK.exists():
        pytest.skip(f"no dask command next to {sys.executable}")
    port = _free_port()
    address = f"tcp://{HOST}:{port}"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    common = {"cwd": tmp_path, "env": env, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT,
              "text": True, "start_new_session": True}
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", HOST, "--port", str(port),
                               "--no-dashboard"], **common)]
    try:
        for name in ("w1", "w2"):
            procs.append(subprocess.Popen(
                [str(DASK), "worker", address, "--host", HOST, "--nthreads", "1", "--nworkers", "1",
                 "--no-nanny", "--no-dashboard", "--name", name, "--death-timeout", "60"], **common))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, procs[0], procs[1:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(os.getpgid(p.pid), signal.SIGKILL)  # its own session: nothing else
            p.wait(timeout=30)
            if p.stdout:
                p.stdout.close()


def test_sweep_on_a_two_worker_cluster_survives_a_killed_worker(cluster, tmp_path):
    address, _, workers = cluster
    serial = tmp_path / "serial"
    done = subprocess.run([str(SCRIPT), "sweep", *GRID, "--serial", "--out", str(serial)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = _rows(serial / "runs.csv")
    assert len(expected) == N_RUNS

    out = tmp_path / "cluster"
    sweep = subprocess.Popen([str(SCRIPT), "sweep", *GRID, "--scheduler", address, "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # kill one worker once the first rows are in, while most are still to come
        _wait(lambda: len(_rows(out / "runs.csv")) >= 2, 120, "the first rows of the cluster sweep",
              procs=[sweep])
        written_before_kill = len(_rows(out / "runs.csv"))
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=30)
        stdout, stderr = sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    assert sweep.returncode == 0, stderr
    assert written_before_kill < N_RUNS, "the sweep ended before the worker was killed"
    assert f"{N_RUNS} of {N_RUNS} runs" in stdout
    got = _rows(out / "runs.csv")
    by_id = {r["run_id"]: r for r in got}
    assert len(by_id) == len(got) == N_RUNS                     # complete, no run twice
    assert by_id == {r["run_id"]: r for r in expected}          # identical to the serial run, row for row
    print(f"\nkilled a worker after {written_before_kill} of {N_RUNS} rows")
