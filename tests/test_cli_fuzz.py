"""A hostile-input fuzzer for the command line, cheap enough for every CI run.

``theory_sim.cli.main`` is called in process (no interpreter start per case), with
tiny runs (``--d 8 --steps 5``) and mostly invalid input drawn by hypothesis: empty
strings, ``.``, ``..``, ``/``, paths through files, unicode, NUL bytes, huge numbers,
nan/inf, negative sizes, unknown flags. Every invocation must end with exit status
0, 1, 2, 3 or 75 (3: the run diverged, which the CLI reports as a failure; 75: the
--out is in use), print no traceback, say what went wrong in exactly one
``theory-sim: error:`` line, print no raw control, escape or bidirectional character,
and leave every file it was not asked to write untouched. A few cases go through the
installed console script as well.

The classes of damage and environment (issue 18), drawn by the fuzzer and each pinned
to its exact exit status by a test of its own: damaged checkpoints (NaN, wrong shape,
another version: exit 2, the file kept), damaged sweep directories (binary or empty
table, header only, torn row, unknown outcome, repeated rows, corrupt manifest,
another format version, foreign run ids, an edited parameter), an --out in use by another process (a lock
held: exit 75), a standard output that fails (ENOSPC: exit 1, results kept) or is
closed, invalid NUMBA_* settings (exit 2 from every command), names with control,
escape, bidi or invalid-UTF-8 characters (printed escaped), a dangling symlink, a
symlink to a run with --force, a legal 255-byte name, a d whose set-up needs more
memory than the machine has, a --max-flow-time below one step, and a sweep key that
the sweep's engine ignores.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import theory_sim as ts
from theory_sim.cli import main
from theory_sim.cli.output import staging_path
from theory_sim.io import lock_dir, save_checkpoint, unlock_dir

INVOCATIONS = 1200
"""Hostile invocations per CI run (the issue asks for at least 1,000)."""

NUMBERS = ["0", "-1", "-0", "1", "2", "3", "5", "nan", "NaN", "inf", "-inf", "1e400", "1e308", "1e-300",
           "99999999999999999999", "-99999999999999999999", "", " ", "abc", "0x10", "1,2", ",", "--",
           "\u0663", "\uff11\uff12", "3.0", "1_0", "\u2075", "\u00bd", "-1e-9", "2.5", "\x00", "4\x00"]
"""Numbers and not-numbers (Arabic-Indic 3 and fullwidth 12 parse as ints in Python: small ones)."""

VALID = {
    "--d": ["8", "16"], "--P": ["4", "6"], "--k": ["2", "3"],
    "--alpha": ["3,2", "2", "4,3,2", "2,3", "6", ",", "nan,1", "6,3,", "0,3", "-1,2", "1e308,1",
                "3;2", "\uff16,\uff13"],
    "--pi": ["0.5,0.5", "1", "0.2,0.3,0.5", "nan,0.5", "1,0", "-0.5,1.5"],
    "--sigma": ["1", "0.5", "0"], "--m": ["1", "2", "3"],
    "--eta": ["0.05", "1e-300", "1e3", "10"], "--eta-E": ["0", "0.01"], "--batch": ["2", "8"],
    "--steps": ["0", "1", "5"], "--seed": ["0", "5"], "--record": ["2", "7"],
    "--tol": ["0", "1e-3"], "--align-threshold": ["0.5", "1"], "--max-flow-time": ["1", "0.5"],
    "--head": ["offdiag", "frozen", "full", "", "GPU"],
    "--engine": ["population", "sgd", "sgd-fast", "", "gpu", "sgd\u2011fast"],
    "--features": ["basis", "random", "basis "], "--split": ["bernoulli", "half", "\u00fcn\u00ef"],
    "--feature-seed": ["1"], "--checkpoint-every": ["2", "5"],
    "--max-flow-time ": ["1e-9"],  # below one step (the space: a second key for the same flag)
    "--d ": ["10000000", "100000000000"],  # set-up beyond the (patched) available memory
}
PATHS = ["out", ".", "..", "", " ", "/", "keep.txt", "keep.txt/sub", "existing", "existing/inner",
         "with space", "\u00fcn\u00efc\u00f8d\u00e9", "\u65e5\u672c", "a" * 300, "nul\x00byte", "./",
         "sub/..", "out.partial", "-dash", "~", "interrupted", "nowhere/deeper/still",
         # issue 18: damaged checkpoints, a run in use, links, terminal-hostile and long names
         "nancheck", "shapecheck", "oldversion", "fifockpt", "busy", "dangling", "dangling/sub", "linkrun",
         "fifo", "esc\x1b[31mred", "bidi\u202eevil", "bad" + os.fsdecode(b"\xff\xfe"), "new\nline", "b" * 255]
DAMAGED_CHECKPOINTS = {"nancheck": "NaN", "shapecheck": "shape", "oldversion": "theory-sim 0.0.0",
                       "fifockpt": "not a regular file"}
"""Interrupted runs whose checkpoint is damaged: ``--resume`` must exit 2 naming the problem
and keep the file."""
SWEEP_DIRS = {  # damaged copy of a tiny sweep -> (exit status of plot-sweep, of rerunning the sweep)
    "sw_ok": (0, 0), "sw_junk": (2, 2), "sw_empty": (2, 2), "sw_header": (2, 0), "sw_torn": (2, 2),
    "sw_unknown": (2, 2), "sw_dup": (0, 0), "sw_conflict": (2, 2), "sw_manifest": (2, 2),
    "sw_version": (2, 2), "sw_foreign": (2, 2), "sw_edited": (2, 2), "sw_fifo": (2, 2),
    "busysweep": (0, 75),
}
"""Each class of damaged sweep directory and what plot-sweep and the same sweep rerun on it
must end with (2: one line, the directory untouched; 0 on sw_dup: the repeat dropped with a
warning; sw_header: the sweep runs the missing rows; busysweep: locked by another sweep)."""
SWEEP_SPEC = ["--grid", "alpha1=4,8", "--d", "8", "--steps", "5", "--serial", "--quiet"]
BAD_NUMBA = [("NUMBA_NUM_THREADS", "abc"), ("NUMBA_NUM_THREADS", "0"), ("NUMBA_NUM_THREADS", "-1"),
             ("NUMBA_NUM_THREADS", " "), ("NUMBA_NUM_THREADS", "1.5"), ("NUMBA_THREADING_LAYER", "bogus"),
             ("NUMBA_OPT", "9")]
"""Settings numba cannot use: every command refuses them with one line, exit 2."""
HOSTILE_OUTPUT = "\x1b\u202e\u202d\u2066\x07\x9b"
"""Characters that must never reach the terminal raw (escape, bidi overrides, bell, CSI)."""
_TINY_SWEEP = ["sweep", "--grid", "alpha1=4,8", "--d", "8", "--steps", "5", "--serial", "--quiet"]
FORMER_SWEEP_FAILURES = [  # tracebacks (or a hang) of the sweep layer this fuzzer found; now one-line errors
    ["plot-sweep", "a" * 300],
    ["plot-sweep", "nul\x00byte"],
    [*_TINY_SWEEP, "--out", "a" * 300],
    [*_TINY_SWEEP, "--out", "nul\x00byte"],
    [*_TINY_SWEEP, "--seeds", "99999999999999999999", "--out", "out"],
    [*_TINY_SWEEP, "--seeds", "1:99999999999", "--out", "out"],
    [*_TINY_SWEEP[:2], "alpha1=lin:4:8:100000000", *_TINY_SWEEP[3:], "--out", "out"],
    [*_TINY_SWEEP, "--grid", "eta=log:1e-3:1e-2:10001", "--out", "out"],
    [*_TINY_SWEEP, "--alpha", "3,1e60", "--out", "out"],
    [*_TINY_SWEEP, "--config", "junk.toml", "--out", "out"],  # binary: a UnicodeDecodeError traceback
    [*_TINY_SWEEP, "--config", "fifo", "--out", "out"],  # a FIFO: the read blocked forever
]
"""Each must exit 2 with one ``theory-sim: error:`` line (``test_former_sweep_failures``); the
fuzzer draws them too."""
OTHER = [["--nope"], ["-x"], ["--force"], ["--d=8"], ["extra-positional"], ["--"], ["--quiet"],
         ["--out"], ["--resume"], ["--d"]]
RUN_BASE = ["run", "--d", "8", "--steps", "5", "--quiet"]

OTHER_COMMANDS = [
    [], ["frobnicate"], ["--version"], ["-h"], ["run", "-h"], ["doctor"], ["doctor", "--bogus"],
    ["RUN"], ["r\u00fcn"], [""],
]


@st.composite
def run_argvs(draw):
    argv = list(RUN_BASE)
    for flag in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=5)):
        argv += [flag, draw(st.sampled_from(VALID[flag] + NUMBERS))]
    which = draw(st.sampled_from(["--out", "--out", "--out", "--resume", None]))
    if which is not None:
        argv += [which, draw(st.sampled_from(PATHS))]
    if draw(st.integers(0, 3)) == 0:
        argv += draw(st.sampled_from(OTHER))
    return [a.strip() if a.startswith("--") else a for a in argv]


@st.composite
def other_argvs(draw):
    kind = draw(st.sampled_from(["top", "plot-sweep", "figures", "sweep", "damaged-sweep"]))
    if kind == "damaged-sweep":
        name = draw(st.sampled_from([*sorted(SWEEP_DIRS), "dangling", "dangling/sub"]))
        if draw(st.booleans()):
            plot = draw(st.sampled_from(["plot.png", "fifo"])) if not name.startswith("dangling") \
                else f"{name}/plot.png"
            return ["plot-sweep", "sw_ok" if name.startswith("dangling") else name, "--out", plot]
        return ["sweep", *SWEEP_SPEC, "--out", name]
    if kind == "top":
        return draw(st.sampled_from(OTHER_COMMANDS))
    if kind == "plot-sweep":
        return ["plot-sweep", draw(st.sampled_from(PATHS))] + (
            ["--out", draw(st.sampled_from(PATHS))] if draw(st.booleans()) else [])
    if kind == "figures":  # never a valid --only: the figures themselves take minutes
        return ["figures", "--quick", "--quiet", "--only", draw(st.sampled_from(
            ["0", "8", "x", "", "1-", "99999999999999999999", "\u0669", ",", "-1"])),
            "--out", draw(st.sampled_from(PATHS))]
    if kind == "sweep" and draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(FORMER_SWEEP_FAILURES))
    # sweep: tiny, serial; huge seed counts and grid sizes must be refused before anything is made
    grid = draw(st.sampled_from(["alpha1=4,8", "alpha1=lin:4:8", "alpha1=lin:4:8:2", "eta=log:0:1:3",
                                 "alpha1=1e400", "nokey=1", "alpha1=", "=", "", "alpha1", "seeds=1",
                                 "alpha1=nan", "alpha1=lin:4:8:0", "alpha1=lin:4:8:-1",
                                 "alpha1=lin:4:8:100000000", "alpha1=lin:4:8:1e400", "alpha1=1e60",
                                 "engine=sgd", "engine=population", "pi2=0.03", "eta_E_ratio=0.03",
                                 "batch=4", "rtol=1e-6,1e-7", "atol=1e-9"]))
    seeds = draw(st.sampled_from(["1", "0", "-1", "1:3", "a:b", "1,1", "", "nan", "99999999999999999999",
                                  "1:99999999999", "0:1000001", "9223372036854775808", "1e3"]))
    return ["sweep", "--grid", grid, "--seeds", seeds, "--d", "8", "--steps", "5", "--serial",
            "--quiet", "--out", draw(st.sampled_from(PATHS))]


def _prepare(root: Path, checkpoint, argv=None) -> None:
    """The files every case starts with; the damaged checkpoints and sweep directories only
    where ``argv`` names them (copying them all for every case would double the CI time)."""
    checkpoint, damaged, sweeps = checkpoint if isinstance(checkpoint, tuple) else (checkpoint, {}, {})
    (root / "keep.txt").write_text("user data")
    (root / "existing").mkdir()
    (root / "existing" / "summary.json").write_text("{}")
    (root / "sub").mkdir()
    (root / "interrupted.partial").mkdir()
    shutil.copy(checkpoint, root / "interrupted.partial" / "checkpoint.npz")
    (root / "dangling").symlink_to("nowhere-at-all")
    (root / "linkrun").symlink_to("existing")
    (root / "busy.partial").mkdir()
    (root / "junk.toml").write_bytes(bytes(range(128, 256)))
    os.mkfifo(root / "fifo")  # not a regular file: writing over it (an atomic rename) would replace it
    names = set() if argv is None else {(Path(a).parts or ("",))[0] for a in argv}
    for name, path in damaged.items():
        if argv is None or name in names:
            (root / f"{name}.partial").mkdir()
            if name == "fifockpt":  # reading it would block: it must be refused unread
                os.mkfifo(root / f"{name}.partial" / "checkpoint.npz")
            else:
                shutil.copy(path, root / f"{name}.partial" / "checkpoint.npz")
    for name, path in sweeps.items():
        if argv is None or name in names:
            shutil.copytree(path, root / name, symlinks=True)
            if name == "sw_fifo":
                os.mkfifo(root / name / "runs.csv")


def _snapshot(root: Path) -> dict:
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        out[str(rel)] = p.read_bytes() if p.is_file() else None
    return out


class FullStdout(io.StringIO):
    """A standard output on a full disk: every write fails with ENOSPC."""

    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _call(argv, cwd: Path, stdout=None):
    out, err = (stdout if stdout is not None else io.StringIO()), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    held = []  # another process's locks: a run writing busy/, a sweep writing busysweep/
    for name in ("busy.partial", "busysweep"):
        if (cwd / name).is_dir():
            held.append(lock_dir(cwd / name))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # --help and --version exit through argparse, as they should
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for fd in held:
            unlock_dir(fd)
        os.chdir(old)
    text = "" if isinstance(out, FullStdout) else out.getvalue()
    return code, text, err.getvalue()


def _written_by(argv) -> set:
    """Top-level names the invocation may create or change (its --out / --resume targets)."""
    values = [argv[i + 1] for i, tok in enumerate(argv[:-1]) if tok in ("--out", "--resume")]
    if argv[:1] == ["plot-sweep"] and len(argv) > 1:
        values.append(argv[1])
    names = set()
    for value in values:
        parts = Path(value).parts if value.strip() else ()
        first = parts[0] if parts else value
        names |= {first, first + ".partial"}
        if Path(first).name:  # a long name's staging directory is shortened (cli/output.py)
            names.add(staging_path(Path(first)).name)
        if first == "linkrun":  # --force through the link replaces the run it points to
            names |= {"existing", "existing.partial"}
    if argv[:1] == ["run"] and not values:
        names.add("runs")  # the default --out: runs/<time>-<engine>-seed<seed>
    return names


def _expected(argv) -> int | None:
    """The exact exit status of an invocation of a damage class (``None``: not one)."""
    values = {argv[i + 1] for i, tok in enumerate(argv[:-1]) if tok in ("--out", "--resume")}
    if {"dangling", "dangling/sub", "dangling/plot.png", "dangling/sub/plot.png", "fifo"} & values:
        return 2  # refused before anything runs, whatever the command
    if argv[:1] == ["plot-sweep"] and len(argv) > 1 and argv[1] in SWEEP_DIRS:
        return SWEEP_DIRS[argv[1]][0]
    if argv[:1] == ["sweep"] and argv[-2:-1] == ["--out"] and argv[-1] in SWEEP_DIRS and \
            argv[1:-2] == SWEEP_SPEC:
        return SWEEP_DIRS[argv[-1]][1]
    return None


def check_invocation(argv, root: Path, *, stdout=None, expect: int | None = None):
    before = _snapshot(root)
    code, stdout, stderr = _call(argv, root, stdout)
    assert "Traceback" not in stderr and "Traceback" not in stdout, (argv, stderr)
    assert code in (0, 1, 2, 3, 75), (argv, code, stderr)
    if expect is not None:
        assert code == expect, (argv, code, stderr)
    raw = [c for c in stdout + stderr if c in HOSTILE_OUTPUT or 0xD800 <= ord(c) < 0xE000]
    assert not raw, (argv, raw, stderr)
    lines = [line for line in stderr.splitlines()
             if not line.startswith(("theory-sim: warning:", "theory-sim: resuming"))]
    errors = [line for line in lines if line.startswith("theory-sim: error:")]
    if code in (1, 2, 75):
        assert len(lines) == 1 and errors == lines, (argv, stderr)
    if code == 3:
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, stderr)
    if code == 0:
        assert errors == [], (argv, stderr)
    after = _snapshot(root)
    touched = _written_by(argv)
    if code in (2, 75):  # refused: nothing at all changed, not even the --out it named
        touched = set()
    if code == 0 and argv[:1] == ["sweep"] and argv[-1] in ("sw_header", "sw_dup", "sw_ok"):
        touched = {argv[-1]}  # rows run or a repeat dropped: that table is rewritten
    for name in set(before) | set(after):
        top = Path(name).parts[0]
        if top in touched:
            continue
        assert before.get(name, "missing") == after.get(name, "missing"), (argv, name)
    for name in ("dangling", "linkrun"):  # a link is never swapped for a folder
        assert (root / name).is_symlink(), (argv, name)
    assert (root / "fifo").is_fifo(), argv
    return code


def _damaged_checkpoints(state: dict, where: Path) -> dict:
    out = {}
    for name in DAMAGED_CHECKPOINTS:
        if name == "fifockpt":  # made in place by _prepare
            out[name] = None
            continue
        s = {k: (np.array(v) if k != "meta" else json.loads(json.dumps(v))) for k, v in state.items()}
        if name == "nancheck":
            s["coords"][0, 0] = np.nan
        elif name == "shapecheck":
            s["coords"] = np.zeros((5, 5))
        else:
            s["meta"]["config"]["version"] = "0.0.0"
        out[name] = save_checkpoint(s, where / f"{name}.npz")
    return out


def _set_field(header: str, line: str, column: str, value: str) -> str:
    fields = line.split(",")
    fields[header.split(",").index(column)] = value
    return ",".join(fields)


def _damaged_sweeps(where: Path) -> dict:
    """A tiny finished sweep and one damaged copy per class of :data:`SWEEP_DIRS`."""
    ok = where / "sw_ok"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["sweep", *SWEEP_SPEC, "--out", str(ok)]) == 0
    table = (ok / "runs.csv").read_text()
    header, first, second = table.splitlines()
    out = {"sw_ok": ok}
    edits = {
        "sw_junk": lambda d: (d / "runs.csv").write_bytes(bytes(range(256)) * 2),
        "sw_empty": lambda d: (d / "runs.csv").write_text(""),
        "sw_header": lambda d: (d / "runs.csv").write_text(header + "\n"),
        "sw_torn": lambda d: (d / "runs.csv").write_text(f"{header}\n{first}\n{second[:40]}\n"),
        "sw_unknown": lambda d: (d / "runs.csv").write_text(
            f"{header}\n{first}\n{second.rsplit(',', 1)[0]},weird\n"),
        "sw_dup": lambda d: (d / "runs.csv").write_text(f"{header}\n{first}\n{second}\n{second}\n"),
        "sw_conflict": lambda d: (d / "runs.csv").write_text(
            f"{header}\n{first}\n{second}\n{second.rsplit(',', 2)[0]},0.5,incomplete\n"),
        "sw_manifest": lambda d: (d / "manifest.json").write_text('{"format": "theory-sim-sweep", '),
        "sw_version": lambda d: (d / "manifest.json").write_text(
            (d / "manifest.json").read_text().replace('"format_version": 1', '"format_version": 7')),
        "sw_foreign": lambda d: (d / "runs.csv").write_text(
            f"{header}\n{first}\nffffffffffffffffffff{second[20:]}\n"),
        "sw_edited": lambda d: (d / "runs.csv").write_text(  # alpha1 of a run changed by hand
            f"{header}\n{first}\n{_set_field(header, second, 'alpha1', '5.0')}\n"),
        "sw_fifo": lambda d: (d / "runs.csv").unlink(),  # a FIFO in its place (_prepare)
        "busysweep": lambda d: None,
    }
    for name, edit in edits.items():
        shutil.copytree(ok, where / name)
        edit(where / name)
        out[name] = where / name
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny interrupted run (10 of 20 steps) that ``--resume interrupted`` continues, its
    damaged copies, and the damaged sweep directories: ``(checkpoint, damaged, sweeps)``."""
    sim = ts.Simulation(ts.ModelParams(d=8), ts.TrainParams(steps=20, record=4))
    sim.advance(10)
    where = tmp_path_factory.mktemp("ckpt")
    state = sim.checkpoint()
    path = save_checkpoint(state, where / "checkpoint.npz")
    return path, _damaged_checkpoints(state, where), _damaged_sweeps(tmp_path_factory.mktemp("sweeps"))


@pytest.fixture(autouse=True)
def _small_machine(monkeypatch):
    """2 GB available, whatever the machine: a d whose set-up needs more is refused (exit 2)
    the same way everywhere, and never actually allocated by the fuzzer."""
    import theory_sim.engines.population as population

    monkeypatch.setattr(population, "available_memory", lambda: 2 * 10**9)


def test_hostile_invocations_in_process(checkpoint):
    """>= INVOCATIONS hostile command lines, each in a fresh directory; timed in the report."""
    seen, codes = [], {}
    t0 = time.perf_counter()

    @settings(max_examples=INVOCATIONS, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(argv=st.one_of(run_argvs(), run_argvs(), run_argvs(), other_argvs()),
           env=st.sampled_from([None] * 12 + BAD_NUMBA + [("NUMBA_NUM_THREADS", "999")]),
           full=st.integers(0, 11))
    def one(argv, env, full):
        seen.append(argv)
        root = Path(tempfile.mkdtemp(prefix="fuzz-"))
        saved = {k: os.environ.get(k) for k, _ in BAD_NUMBA}
        try:
            _prepare(root, checkpoint, argv)
            expect = _expected(argv)
            if env is not None:
                os.environ[env[0]] = env[1]
                informative = {"-h", "--help", "--version"} & set(argv)  # answered before any check
                expect = None if informative else 2 if env[1] != "999" else expect
            stdout = FullStdout() if full == 0 else None
            if stdout is not None and expect == 0:
                expect = None  # a warning-only damage class then fails on its summary line: 1
            code = check_invocation(argv, root, stdout=stdout, expect=expect)
            if argv[:2] == ["run", "--resume"] or "--resume" in argv:
                target = argv[argv.index("--resume") + 1] if argv[-1] != "--resume" else ""
                if target in DAMAGED_CHECKPOINTS:
                    kept = root / f"{target}.partial" / "checkpoint.npz"
                    assert code == 2 and (kept.exists() or kept.is_fifo()), argv
            codes[code] = codes.get(code, 0) + 1
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            shutil.rmtree(root, ignore_errors=True)

    one()
    elapsed = time.perf_counter() - t0
    assert len(seen) >= 1000, len(seen)
    print(f"\n{len(seen)} hostile invocations in {elapsed:.1f} s; exit codes {dict(sorted(codes.items()))}")


@pytest.mark.parametrize("argv", FORMER_SWEEP_FAILURES, ids=lambda a: f"{a[0]}-{a[-1][:12]!r}")
def test_former_sweep_failures(argv, checkpoint, tmp_path):
    _prepare(tmp_path, checkpoint)
    assert check_invocation(argv, tmp_path) == 2


SCRIPT = Path(sys.executable).with_name("theory-sim")


@pytest.mark.parametrize("argv", [
    ["run", "--out", ""],
    ["run", "--out", "."],
    ["run", "--out", "keep.txt/sub"],
    ["run", "--eta", "nan"],
    ["run", "--resume", "nowhere"],
    ["run", "--alpha", "\uff16,\uff13,x"],
], ids=repr)
def test_hostile_invocations_through_the_console_script(argv, tmp_path):
    assert SCRIPT.exists(), SCRIPT
    (tmp_path / "keep.txt").write_text("user data")
    before = _snapshot(tmp_path)
    done = subprocess.run([str(SCRIPT), *argv, "--d", "8", "--steps", "5", "--quiet"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("theory-sim: error:"), done.stderr
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------- issue 18: each class, its exact status

def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("theory-sim: warning:")]
    assert len(lines) == 1 and lines[0].startswith("theory-sim: error:"), err
    return lines[0]


@pytest.mark.parametrize("name", sorted(DAMAGED_CHECKPOINTS))
def test_a_damaged_checkpoint_is_refused_naming_the_problem_and_kept(name, checkpoint, tmp_path):
    _prepare(tmp_path, checkpoint, ["--resume", name])
    path = tmp_path / f"{name}.partial" / "checkpoint.npz"
    before = path.read_bytes() if path.is_file() else None
    code, out, err = _call(["run", "--resume", name, "--quiet"], tmp_path)
    assert code == 2 and out == ""
    assert DAMAGED_CHECKPOINTS[name] in _one_error(err), err
    assert not (tmp_path / name).exists()
    assert path.is_fifo() if before is None else path.read_bytes() == before


@pytest.mark.parametrize("name", sorted(SWEEP_DIRS))
@pytest.mark.parametrize("command", ["plot-sweep", "sweep"])
def test_a_damaged_sweep_directory_ends_with_its_status_and_keeps_the_data(name, command, checkpoint,
                                                                          tmp_path):
    argv = ["plot-sweep", name, "--out", "plot.png"] if command == "plot-sweep" else \
        ["sweep", *SWEEP_SPEC, "--out", name]
    _prepare(tmp_path, checkpoint, argv)
    expect = _expected(argv)
    assert expect == SWEEP_DIRS[name][0 if command == "plot-sweep" else 1]
    before = _snapshot(tmp_path / name)
    code = check_invocation(argv, tmp_path, expect=expect)
    assert code == expect
    if code != 0:
        assert _snapshot(tmp_path / name) == before
    if name == "sw_dup" and command == "sweep":  # repaired: the repeat is gone, both runs kept
        assert len((tmp_path / name / "runs.csv").read_text().splitlines()) == 3


def test_a_repeated_row_is_counted_once_with_a_warning(checkpoint, tmp_path):
    _prepare(tmp_path, checkpoint, ["sw_dup"])
    code, out, err = _call(["plot-sweep", "sw_dup", "--out", "plot.png"], tmp_path)
    assert code == 0 and "phase diagram" in out
    assert err.startswith("theory-sim: warning:") and "repeated row" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["run", *RUN_BASE[1:], "--out", "busy"],
    ["run", *RUN_BASE[1:], "--out", "busy", "--force"],
    ["run", "--quiet", "--resume", "busy"],
    ["sweep", *SWEEP_SPEC, "--out", "busysweep"],
], ids=["out", "force", "resume", "sweep"])
def test_an_out_in_use_is_refused_and_not_told_to_force(argv, checkpoint, tmp_path):
    _prepare(tmp_path, checkpoint, argv)
    code = check_invocation(argv, tmp_path, expect=75)
    _, _, err = _call(argv, tmp_path)
    line = _one_error(err)
    assert code == 75 and "in use" in line and "--force" not in line, line


def test_two_runs_started_on_one_out_one_is_refused(tmp_path):
    """Two console-script runs at once on one --out: the second is refused as in use (exit 75)
    while the first finishes its run (a long one: seed 0 at d 512 escapes late)."""
    first = subprocess.Popen([str(SCRIPT), "run", "--d", "512", "--eta", "1e-3", "--seed", "0", "--quiet",
                              "--out", "r"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if (tmp_path / "r.partial").exists() or first.poll() is not None:
                break
            time.sleep(0.05)
        code, _, err = _call(["run", *RUN_BASE[1:], "--out", "r", "--force"], tmp_path)
        assert code == 75 and "in use" in err, err
        assert first.poll() is None and (tmp_path / "r.partial").is_dir()
    finally:
        first.terminate()
        first.wait(60)
    assert (tmp_path / "r").is_dir() or (tmp_path / "r.partial").is_dir()  # the live run was not deleted


@pytest.mark.parametrize("argv", [["doctor"], ["--help"], ["run", "--help"], ["--version"],
                                  ["run", *RUN_BASE[1:], "--out", "r"],
                                  ["sweep", *SWEEP_SPEC, "--out", "s"]], ids=repr)
def test_a_full_stdout_ends_with_one_line_and_exit_1_keeping_the_results(argv, tmp_path):
    code, _, err = _call(argv, tmp_path, FullStdout())
    assert code == 1 and "No space left on device" in _one_error(err), err
    if argv[0] == "run" and "--help" not in argv:
        assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["summary.json", "trajectory.npz"]
    if argv[0] == "sweep":
        assert len((tmp_path / "s" / "runs.csv").read_text().splitlines()) == 3


def test_a_closed_stdout_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    err = io.StringIO()
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stderr(err):
            code = main(["run", *RUN_BASE[1:], "--out", "r"])
    finally:
        os.chdir(old)
    assert code == 1 and "standard output is closed" in _one_error(err.getvalue())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("variable, value", BAD_NUMBA[:3] + BAD_NUMBA[5:])
@pytest.mark.parametrize("argv", [["doctor"], ["run", *RUN_BASE[1:], "--out", "r"],
                                  ["sweep", *SWEEP_SPEC, "--out", "s"], ["plot-sweep", "s"],
                                  ["figures", "--quick", "--only", "9"]], ids=lambda a: a[0])
def test_an_invalid_numba_setting_is_one_line_from_every_command(argv, variable, value, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv(variable, value)
    code, out, err = _call(argv, tmp_path)
    assert code == 2 and variable in _one_error(err), err
    assert list(tmp_path.iterdir()) == []
    if argv == ["doctor"]:  # the report still comes, with the versions a bug report needs
        assert "dask" in out and "matplotlib" in out and "numba" in out


def test_too_many_numba_threads_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_NUM_THREADS", "999")
    code, out, err = _call(["doctor"], tmp_path)
    assert code == 0 and err.startswith("theory-sim: warning: NUMBA_NUM_THREADS=999") and len(
        err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["doctor"], ["run", "--out", "r"]], ids=repr)
def test_the_console_script_survives_numba_settings_that_crash_numba(argv, tmp_path):
    env = dict(os.environ, NUMBA_NUM_THREADS="0", PYTHONWARNINGS="ignore")
    done = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "NUMBA_NUM_THREADS='0'" in _one_error(done.stderr)
    if argv == ["doctor"]:
        assert "dask" in done.stdout and "matplotlib" in done.stdout


def test_an_unwritable_kernel_cache_is_a_warning(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "file" / "cache"))
    code, _, err = _call(["run", *RUN_BASE[1:], "--out", "r"], tmp_path)
    assert code == 0 and "kernel cache" in err and "not writable" in err and "NUMBA_CACHE_DIR" in err
    assert err.startswith("theory-sim: warning:")


@pytest.mark.parametrize("name, escaped", [("esc\x1b[31mred", "esc\\x1b[31mred"),
                                           ("bidi\u202eevil", "bidi\\u202eevil"),
                                           ("bad" + os.fsdecode(b"\xff"), "bad\\xff"),
                                           ("new\nline", "new\\x0aline")], ids=repr)
def test_terminal_hostile_names_are_printed_escaped(name, escaped, tmp_path):
    code, out, err = _call(["run", *RUN_BASE[1:], "--out", name], tmp_path)
    assert code == 0 and f"results: {escaped}/" in out and (tmp_path / name).is_dir()
    code, out, err = _call(["run", *RUN_BASE[1:], "--out", name], tmp_path)
    assert code == 2 and escaped in _one_error(err)
    assert not [c for c in out + err if c in HOSTILE_OUTPUT]


@pytest.mark.parametrize("command", [["run", *RUN_BASE[1:]], ["sweep", *SWEEP_SPEC],
                                     ["figures", "--quick", "--only", "1"], ["plot-sweep", "sw_ok"]],
                         ids=lambda a: a[0])
@pytest.mark.parametrize("out", ["dangling", "dangling/sub"])
def test_an_out_through_a_dangling_link_is_refused_before_the_run(command, out, checkpoint, tmp_path):
    argv = [*command, "--out", out if command[0] != "plot-sweep" else f"{out}/plot.png"]
    _prepare(tmp_path, checkpoint, argv)
    code = check_invocation(argv, tmp_path, expect=2)
    _, _, err = _call(argv, tmp_path)
    assert code == 2 and "symbolic link" in err and "nowhere-at-all" in err
    assert not (tmp_path / "nowhere-at-all").exists()


def test_force_through_a_link_replaces_the_run_it_points_to_and_says_so(checkpoint, tmp_path):
    _prepare(tmp_path, checkpoint)
    code, out, err = _call(["run", *RUN_BASE[1:], "--out", "linkrun", "--force"], tmp_path)
    assert code == 0, err
    assert err.startswith("theory-sim: warning: --out linkrun is a symbolic link") and "replaces" in err
    assert (tmp_path / "linkrun").is_symlink() and (tmp_path / "existing" / "trajectory.npz").exists()


def test_a_legal_255_byte_name_works(tmp_path):
    name = "\u00e9" * 127 + "x"  # 255 bytes in UTF-8: NAME.partial would be too long
    code, out, err = _call(["run", *RUN_BASE[1:], "--out", name], tmp_path)
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_set_up_beyond_the_machines_memory_is_refused_pointing_to_the_flow_engine(tmp_path):
    for engine in ("population", "sgd-fast"):
        code, _, err = _call(["run", *RUN_BASE[1:], "--engine", engine, "--d", "10000000"], tmp_path)
        line = _one_error(err)
        assert code == 2 and "available" in line and "--engine flow --init reduced" in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_slow_set_up_is_announced(tmp_path, monkeypatch):
    import theory_sim.cli.run as run_cli

    monkeypatch.setattr(run_cli, "SLOW_SETUP_SECONDS", 0.0)
    code, _, err = _call(["run", *RUN_BASE[1:], "--out", "r"], tmp_path)
    assert code == 0 and err.startswith("theory-sim: warning: at d=8 the population engine") and \
        "--engine flow --init reduced" in err


@pytest.mark.parametrize("argv, needle", [
    (["run", "--d", "8", "--eta", "0.01", "--max-flow-time", "0.001", "--quiet"], "one step"),
    (["sweep", "--grid", "rtol=1e-6,1e-7", *SWEEP_SPEC[2:], "--out", "s"], "only affects the flow engine"),
    (["sweep", *SWEEP_SPEC, "--atol", "1e-9", "--out", "s"], "only affects the flow engine"),
    (["sweep", "--grid", "alpha1=4,8", "--d", "10000000", "--steps", "5", "--serial", "--quiet",
      "--out", "s"], "this machine has available"),
], ids=["max-flow-time", "grid-rtol", "base-atol", "sweep-huge-d"])
def test_runaway_or_ignored_settings_are_refused(argv, needle, tmp_path):
    code, _, err = _call(argv, tmp_path)
    assert code == 2 and needle in _one_error(err), err
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_a_sweep_is_one_line_and_keeps_the_rows_written(checkpoint, tmp_path,
                                                                           monkeypatch):
    import theory_sim.sweep.table as table

    _prepare(tmp_path, checkpoint, ["sw_header"])
    before = (tmp_path / "sw_header" / "runs.csv").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(table, "write_table", full)
    code, out, err = _call(["sweep", *SWEEP_SPEC, "--out", "sw_header"], tmp_path)
    line = _one_error(err)
    assert code == 1 and "No space left on device" in line and "runs.csv" in line, err
    assert (tmp_path / "sw_header" / "runs.csv").read_bytes() == before


def test_help_lists_every_exit_status(tmp_path):
    from theory_sim.cli import EXIT_STATUSES

    code, out, _ = _call(["--help"], tmp_path)
    assert code == 0
    listed = out.split("exit status:")[1].split("\n")
    codes = [int(line.split()[0]) for line in listed if line[:6].strip().isdigit()]
    assert codes == [c for c, _ in EXIT_STATUSES] == [0, 1, 2, 3, 75, 130, 143]


def test_plot_sweep_never_writes_over_what_is_not_a_regular_file(checkpoint, tmp_path):
    _prepare(tmp_path, checkpoint, ["sw_ok"])
    for out in ("fifo", "sub"):
        code = check_invocation(["plot-sweep", "sw_ok", "--out", out], tmp_path, expect=2)
        assert code == 2
    assert (tmp_path / "fifo").is_fifo() and (tmp_path / "sub").is_dir()


def test_plot_sweep_through_a_link_writes_the_file_it_names(checkpoint, tmp_path):
    _prepare(tmp_path, checkpoint, ["sw_ok"])
    (tmp_path / "real.png").write_bytes(b"old")
    (tmp_path / "link.png").symlink_to("real.png")
    code, out, err = _call(["plot-sweep", "sw_ok", "--out", "link.png"], tmp_path)
    assert code == 0, err
    assert (tmp_path / "link.png").is_symlink() and (tmp_path / "real.png").read_bytes()[:4] == b"\x89PNG"


def test_a_full_disk_under_the_image_is_exit_1(checkpoint, tmp_path, monkeypatch):
    import theory_sim.cli.sweep as sweep_cli

    _prepare(tmp_path, checkpoint, ["sw_ok"])

    @contextlib.contextmanager
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        yield

    monkeypatch.setattr(sweep_cli, "atomic_write", full)
    code, _, err = _call(["plot-sweep", "sw_ok", "--out", "plot.png"], tmp_path)
    assert code == 1 and "No space left on device" in _one_error(err)
    assert not (tmp_path / "plot.png").exists()


def test_a_file_system_without_locks_still_runs(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    code, _, err = _call(["run", *RUN_BASE[1:], "--out", "r"], tmp_path)
    assert code == 0 and err == "", err
    code, _, err = _call(["sweep", *SWEEP_SPEC, "--out", "s"], tmp_path)
    assert code == 0 and err == "", err


def test_a_checkpoint_that_cannot_be_written_does_not_end_the_run(tmp_path, monkeypatch):
    import theory_sim.cli.run as run_cli

    def full(state, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(run_cli, "save_checkpoint", full)
    code, out, err = _call(["run", "--d", "8", "--steps", "40", "--record", "4", "--checkpoint-every", "2",
                            "--quiet", "--out", "r"], tmp_path)
    assert code == 0 and "results: r/" in out
    assert err.startswith("theory-sim: warning: cannot write the checkpoint") and len(err.splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["summary.json", "trajectory.npz"]


def test_resume_through_a_link_finds_the_interrupted_run(checkpoint, tmp_path):
    _prepare(tmp_path, checkpoint)
    (tmp_path / "interrupted").mkdir()  # what the link names; its staging dir holds the checkpoint
    (tmp_path / "link").symlink_to("interrupted")
    code, out, err = _call(["run", "--quiet", "--resume", "link"], tmp_path)
    assert code == 0, err
    assert (tmp_path / "link").is_symlink() and (tmp_path / "interrupted" / "summary.json").exists()
    assert not (tmp_path / "interrupted.partial").exists()
