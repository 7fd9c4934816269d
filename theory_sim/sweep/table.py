"""The sweep directory on disk: the CSV table (schema and rows), the manifest, and the
store that resumes a sweep from them. Every file is replaced atomically (``io.atomic_write``).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .._version import __version__
from ..io import atomic_write, write_json
from ..params import ModelParams, TrainParams
from .spec import KEYS, Cell, SweepError, SweepSpec

FORMAT = "theory-sim-sweep"
FORMAT_VERSION = 1
TABLE = "runs.csv"
MANIFEST = "manifest.json"
PLOT = "phase_diagram.png"
WRITE_EVERY_SECONDS = 2.0
"""The table is rewritten (atomically) at most this often while a sweep runs, and at the end."""


def _shape(cells: list[Cell]):
    m = max((c.model.m for c in cells), default=2)
    L = max((c.model.L for c in cells), default=2)
    return m, L


_SHAPE_COLUMNS = ("d", "P", "k")
_PARAM_COLUMNS = ("sigma", "m", "features", "feature_seed", "split", "eta", "eta_E", "eta_E_ratio", "head",
                  "steps", "max_steps", "tol", "align_threshold", "max_flow_time", "max_norm", "check_every",
                  "head_tol")
"""The parameter columns of every table (format version 1), after the alpha / pi entries."""


def _extra_columns(cells: list[Cell]) -> list[str]:
    """The other sweep keys (e.g. ``engine``, or a parameter added to ``params.PARAMETERS``
    later), as columns after :data:`_PARAM_COLUMNS`: each one only when a run of the sweep
    sets it away from its default, so that the tables of earlier sweeps keep their columns."""
    out = []
    for key in KEYS.values():
        if key.target == "sweep" or key.name in _SHAPE_COLUMNS or key.name in _PARAM_COLUMNS:
            continue
        default = getattr(TrainParams() if key.target == "train" else ModelParams(), key.name)
        if any(getattr(c.train if key.target == "train" else c.model, key.name) != default for c in cells):
            out.append(key.name)
    return out


def columns(cells: list[Cell]) -> list[str]:
    """The table's columns for these runs (entries up to the largest m and L)."""
    m, L = _shape(cells)
    cols = ["run_id", "cell", "seed", *_SHAPE_COLUMNS]
    cols += [f"alpha{l + 1}" for l in range(L)] + [f"pi{l + 1}" for l in range(L)]
    cols += [*_PARAM_COLUMNS, *_extra_columns(cells)]
    cols += ["status", "n_steps", "flow_time", "T1", "T2", "T3", "T4",
             "T1_flow", "T2_flow", "T3_flow", "T4_flow", "leader", "follower"]
    cols += [f"c_{j + 1}_{l + 1}" for j in range(m) for l in range(L)]
    cols += [f"E_peak_{j + 1}_{r + 1}" for j in range(m) for r in range(m) if j != r]
    cols += ["E_peak_follower_leader", "head_distance", "loss", "outcome"]
    return cols


RESULT_DOC = {
    "run_id": "hash of every parameter of the run (resume key)",
    "cell": "index of the grid point (0-based, grid order); seeds share it",
    "steps": "the fixed step budget, empty when the run went until converged or capped",
    "max_steps": "the step budget actually used: steps, or ceil(max_flow_time / eta)",
    "status": "converged, max_steps (budget or flow-time cap) or diverged",
    "n_steps": "steps done when the run stopped",
    "T1..T4": "phase times in steps (docs/model.md section 9, analysis.phase_times at every step); "
              "empty: not reached",
    "leader, follower": "neuron numbers (1-based, as in the paper) of the phase times",
    "c_j_l": "final |c_jl| = |<w_j, v_l>| / |w_j| (1-based j, l)",
    "E_peak_j_r": "max over the run of |E_jr| (1-based j != r)",
    "E_peak_follower_leader": "max |E_{follower,leader}| (the head entry of phase II)",
    "head_distance": "final |E - I|_F",
    "loss": "final population loss",
    "outcome": "diverse, collapsed, incomplete or vanishing (analysis.outcome; incomplete also when "
               "the flow-time cap stopped the run; vanishing: a flow run the engine stopped as a "
               "follower shrinking away, a heuristic rule, docs/paper.md)",
}


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    return str(x)


def _param_values(cell: Cell, cols: list[str]) -> dict:
    """The parameter part of a run's row (its columns before ``status``), as values."""
    model, train = cell.model, cell.train
    eta = train.eta
    row = {"run_id": cell.run_id, "cell": cell.cell, "seed": train.seed, "d": model.d, "P": model.P,
           "k": model.k, "sigma": model.sigma, "m": model.m, "features": model.features,
           "feature_seed": model.feature_seed, "split": model.split, "eta": eta,
           "eta_E": train.eta_E, "head": train.head,
           "eta_E_ratio": train.eta_E / eta if cell.eta_E_ratio is None else cell.eta_E_ratio,
           "steps": train.steps, "max_steps": train.max_steps, "tol": train.tol,
           "align_threshold": train.align_threshold, "max_flow_time": train.max_flow_time,
           "max_norm": train.max_norm, "check_every": train.check_interval,
           "head_tol": cell.head_tol}
    for name in cols:
        if name not in row and name in KEYS and KEYS[name].target != "sweep":
            row[name] = getattr(train if KEYS[name].target == "train" else model, name)
    for l in range(model.L):
        row[f"alpha{l + 1}"] = model.alpha[l]
        row[f"pi{l + 1}"] = model.pi[l]
    return row


def check_row(path, n: int, row: dict, cell: Cell, cols: list[str]) -> None:
    """Refuse a row whose parameter columns are not those of its run (an edited value): the
    phase diagram would count it at a grid point it does not belong to."""
    if "status" not in cols:
        return
    expected = _param_values(cell, cols)
    for col in cols[:cols.index("status")]:
        want = _fmt(expected.get(col))
        if row.get(col) != want:
            raise SweepError(f"{path}: row {n + 1} (run_id {cell.run_id}): {col} is {row.get(col)!r}, "
                             f"but that run has {want!r} (an edited row: restore the value, or delete "
                             f"the line to run it again)")


def make_row(cell: Cell, res: dict, cols: list[str]) -> dict:
    """The table row (all values as text) of one finished run."""
    model, train = cell.model, cell.train
    eta = train.eta
    row = _param_values(cell, cols) | {
        "status": res["status"], "n_steps": res["steps"], "flow_time": res["flow_time"],
        "head_distance": res["head_distance"], "loss": res["loss"], "outcome": res["outcome"]}
    for t in ("T1", "T2", "T3", "T4"):
        row[t] = res[t]
        # the located flow time where the summary has it (the flow engine), else eta * steps
        flow = getattr(res, f"{t}_flow", None)
        row[f"{t}_flow"] = flow if flow is not None else (None if res[t] is None else res[t] * eta)
    lead, fol = res["leader"], res["follower"]
    row["leader"] = None if lead is None else lead + 1
    row["follower"] = None if fol is None else fol + 1
    c, peak = res["alignment"], res["peak_offdiag"]
    for j in range(model.m):
        for l in range(model.L):
            row[f"c_{j + 1}_{l + 1}"] = c[j, l]
        for r in range(model.m):
            if j != r:
                row[f"E_peak_{j + 1}_{r + 1}"] = peak[j, r]
    row["E_peak_follower_leader"] = None if fol is None or lead is None else peak[fol, lead]
    return {col: _fmt(row.get(col)) for col in cols}


def write_table(path: Path, cols: list[str], rows: Iterable[dict]) -> None:
    """Write the table atomically (temp file, fsync, rename)."""
    with atomic_write(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_table(path, notes: list | None = None) -> tuple[list[str], list[dict]]:
    """``(columns, rows)`` of a table written by :func:`write_table` (values as text).

    A file that is not a table (binary, empty), a torn row, an unknown outcome or two
    different rows of one run are a one-line ``SweepError`` (the file is left as it is);
    a row repeated exactly is dropped, and ``notes`` (if given) receives a line saying so.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block the read forever
        raise SweepError(f"{path}: not a regular file, so not a sweep table")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = list(reader.fieldnames or [])
            if not cols:
                raise SweepError(f"{path}: empty, not a sweep table (a table has at least its header "
                                 f"line); move it away and rerun the sweep to rebuild it")
            rows, lines = [], []
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise SweepError(f"{path}: line {reader.line_num} does not have "
                                     f"{len(cols)} fields (a torn or edited row: delete that line "
                                     f"and rerun the sweep to run it again)")
                rows.append(row)
                lines.append(reader.line_num)
    except OSError as exc:
        raise SweepError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SweepError(f"{path}: not a sweep table (binary data, not UTF-8 text)") from None
    except csv.Error as exc:
        raise SweepError(f"{path}: not a readable CSV table ({exc})") from None
    return cols, _checked_rows(path, cols, rows, lines, notes)


def _checked_rows(path, cols, rows, lines, notes) -> list[dict]:
    """Refuse unknown outcomes and conflicting rows of one run; drop exact repeats (noted)."""
    from ..status import OUTCOMES

    if "outcome" in cols:
        for row, line in zip(rows, lines, strict=True):
            if row["outcome"] not in OUTCOMES:
                raise SweepError(f"{path}: line {line}: unknown outcome {row['outcome']!r} (known: "
                                 f"{', '.join(OUTCOMES)}); fix or delete that line")
    if "run_id" not in cols:
        return rows
    first: dict[str, tuple[dict, int]] = {}
    out, repeats = [], []
    for row, line in zip(rows, lines, strict=True):
        seen = first.get(row["run_id"])
        if seen is None:
            first[row["run_id"]] = (row, line)
            out.append(row)
        elif seen[0] == row:
            repeats.append(f"{line} (= line {seen[1]})")
        else:
            raise SweepError(f"{path}: lines {seen[1]} and {line} are two different rows of the "
                             f"run {row['run_id']}; delete the wrong one")
    if repeats and notes is not None:
        notes.append(f"{path}: {len(repeats)} repeated row(s) counted once (line "
                     f"{', '.join(repeats[:3])}{' ...' if len(repeats) > 3 else ''})")
    return out


def table_columns(path, notes: list | None = None) -> dict[str, np.ndarray]:
    """The table as columns: numbers as float arrays (NaN where empty), text as str arrays."""
    cols, rows = read_table(path, notes)
    return _as_columns(cols, rows)


def _versions() -> dict:
    import numba

    out = {"theory_sim": __version__, "python": platform.python_version(),
           "numpy": np.__version__, "numba": numba.__version__}
    for name in ("dask", "distributed"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_manifest(mpath: Path) -> dict:
    """The sweep manifest at ``mpath``, or a one-line ``SweepError``."""
    if mpath.exists() and not mpath.is_file():  # a FIFO would block the read forever
        raise SweepError(f"{mpath}: not a regular file, so not a sweep manifest")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SweepError(f"{mpath}: not a readable sweep manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SweepError(f"{mpath}: not a theory-sim sweep manifest")
    return manifest


def checked_path(path, what: str, param: str | None = None) -> Path:
    """``path`` as a Path, or a one-line SweepError if the system cannot even look it up
    (a NUL byte, a name longer than the file system allows, ...); a missing path is fine."""
    text = os.fspath(path)
    if "\x00" in text:
        raise SweepError(f"{what} {text!r} contains a NUL byte", param=param)
    try:
        os.stat(text)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise SweepError(f"{what} {text[:60]}{'...' if len(text) > 60 else ''}: "
                         f"{exc.strerror or exc}", param=param) from None
    return Path(text)


def _check_version(mpath: Path, manifest: dict) -> None:
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SweepError(f"{mpath}: sweep format version {manifest.get('format_version')!r}, "
                         f"this theory-sim reads version {FORMAT_VERSION}")


MAX_CHECKED_RUNS = 200_000
"""Up to this many runs, reading a sweep checks every row's run_id against its manifest's spec."""


def _spec_run_ids(manifest: dict) -> dict | None:
    """The runs of the manifest's spec by run id (``None`` when too many to expand quickly)."""
    from ..params import ParamError
    from .spec import expand

    spec = manifest.get("spec")
    try:
        grid = tuple((k, tuple(v)) for k, v in spec["grid"])
        sweep = SweepSpec(base=dict(spec["base"]), grid=grid, seeds=tuple(spec["seeds"]))
        if sweep.n_runs > MAX_CHECKED_RUNS:
            return None
        return {c.run_id: c for c in expand(sweep)}
    except (TypeError, KeyError, ValueError, ParamError) as exc:
        raise SweepError(f"{MANIFEST}: its spec is not a valid sweep ({exc})") from None


def load_sweep(directory, notes: list | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """``(manifest, table columns)`` of a sweep directory, checked: the manifest's format
    version, the table's columns against the manifest's, every run_id against its spec."""
    directory = checked_path(directory, "sweep directory")
    mpath, tpath = directory / MANIFEST, directory / TABLE
    if not mpath.exists():
        raise SweepError(f"{directory}: not a theory-sim sweep directory (no {MANIFEST})")
    manifest = read_manifest(mpath)
    _check_version(mpath, manifest)
    if not tpath.exists():
        raise SweepError(f"{directory}: no {TABLE} yet (no run has finished)")
    cols, rows = read_table(tpath, notes)
    if isinstance(manifest.get("columns"), list) and cols != manifest["columns"]:
        raise SweepError(f"{tpath}: its columns differ from those its {MANIFEST} lists (an edited "
                         f"or foreign table)")
    known = _spec_run_ids(manifest) if rows else None
    if known is not None:
        for n, row in enumerate(rows):
            if row.get("run_id") not in known:
                raise SweepError(f"{tpath}: row {n + 1} (run_id {row.get('run_id')}) is not a run "
                                 f"of the sweep its {MANIFEST} describes")
            check_row(tpath, n, row, known[row["run_id"]], cols)
    return manifest, _as_columns(cols, rows)


def _as_columns(cols, rows) -> dict[str, np.ndarray]:
    out = {}
    for c in cols:
        vals = [r[c] for r in rows]
        try:
            out[c] = np.array([float(v) if v != "" else np.nan for v in vals])
        except ValueError:
            out[c] = np.array(vals, dtype=str)
    return out




class Store:
    """The sweep directory: manifest, the table, and the finished rows in memory."""

    def __init__(self, out: Path, spec: SweepSpec, cells: list[Cell]):
        self.out = checked_path(out, "out", param="out")
        self.cells = cells
        self.cols = columns(cells)
        self.pos = {c.run_id: c.index for c in cells}
        self.rows: dict[int, dict] = {}
        self.spec = spec.to_dict()
        self.manifest = None
        self.notes: list[str] = []
        self.dirty = False
        if self.out.exists() and not self.out.is_dir():
            raise SweepError(f"out {self.out} exists and is not a directory", param="out")
        mpath = self.out / MANIFEST
        if mpath.exists():
            self._load_existing(mpath)
        elif self.out.exists() and any(self.out.iterdir()):
            raise SweepError(f"out {self.out} exists and is not a theory-sim sweep "
                             f"(no {MANIFEST}); choose another directory", param="out")
        self.last_write = 0.0

    def _load_existing(self, mpath):
        manifest = read_manifest(mpath)
        _check_version(mpath, manifest)
        if manifest.get("spec") != self.spec:
            raise SweepError(f"out {self.out} holds a different sweep (its grid, seeds or fixed "
                             f"values differ); choose another directory to run this one", param="out")
        self.manifest = manifest
        tpath = self.out / TABLE
        if tpath.exists():
            cols, rows = read_table(tpath, self.notes)
            self.dirty = bool(self.notes)  # repeated rows dropped: the table is rewritten without them
            if cols != self.cols:
                raise SweepError(f"{tpath}: its columns differ from this sweep's; "
                                 f"choose another directory", param="out")
            for n, row in enumerate(rows):
                i = self.pos.get(row["run_id"])
                if i is None:
                    raise SweepError(f"{tpath}: row {n + 1} (run_id {row['run_id']}) is not a "
                                     f"run of this sweep")
                check_row(tpath, n, row, self.cells[i], cols)
                self.rows.setdefault(i, row)

    def start(self, execution: dict) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepError(f"out {self.out} is not writable ({exc.strerror or exc})", param="out") from None
        m = self.manifest or {"format": FORMAT, "format_version": FORMAT_VERSION,
                              "spec": self.spec, "started": _now(), "finished": None,
                              "sessions": []}
        m.update({"n_runs": len(self.cells), "table": TABLE, "columns": self.cols,
                  "column_notes": RESULT_DOC, "indexing": "1-based (neuron j, feature l), as in "
                  "the paper", "versions": _versions()})
        m["sessions"].append({"started": _now(), "ended": None, **execution})
        self.manifest = m
        self._write_manifest()

    def add(self, rows: list) -> int:
        new = 0
        for index, row in rows:
            if index not in self.rows:
                self.rows[index] = row
                new += 1
        self.dirty = self.dirty or new > 0
        return new

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.dirty or (not force and now - self.last_write < WRITE_EVERY_SECONDS):
            return
        write_table(self.out / TABLE, self.cols, (self.rows[i] for i in sorted(self.rows)))
        self.dirty = False
        self.last_write = now

    def finish(self, status: str, n_new: int) -> None:
        self.flush(force=True)
        if not (self.out / TABLE).exists():
            write_table(self.out / TABLE, self.cols, [])
        m = self.manifest
        m["n_done"] = len(self.rows)
        m["complete"] = len(self.rows) == len(self.cells)
        if m["complete"] and m.get("finished") is None:
            m["finished"] = _now()
        m["sessions"][-1].update({"ended": _now(), "status": status, "new_runs": n_new})
        self._write_manifest()

    def _write_manifest(self):
        write_json(self.out / MANIFEST, self.manifest)

    def missing(self) -> list[Cell]:
        return [c for c in self.cells if c.index not in self.rows]
