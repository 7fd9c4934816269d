"""Parameter sweeps: grids of (parameters, seed) runs, one tidy table, resumable.

A sweep is a *spec*: fixed ``base`` values, a ``grid`` (an ordered list of keys,
each with its values; the runs are their Cartesian product) and ``seeds``. Every run
is a population run (MODEL.md section 6) done by the batched kernel
(:func:`theory_sim.batched.simulate_many`); its row in the table holds every
parameter, the seed, the phase times, the final alignment, the peak ``|E_jr|`` and
the outcome (:data:`RESULT_DOC`).

On disk, a sweep directory holds ``runs.csv`` (the table, rows in grid order, one
per finished run) and ``manifest.json`` (the spec, versions, sessions with start and
end times). Both are only ever replaced atomically (``io.atomic_write``), so an
interrupted or killed sweep leaves a consistent table of the runs finished so far;
running the same spec on the same directory again runs only the missing rows.

Execution: in this process (``executor="serial"``; the kernel still spreads the
runs over numba's threads) or on Dask distributed, where each task is a chunk of
runs of one shape, advanced by the batched kernel on the worker's thread.

Grid keys: every scalar of ``ModelParams`` and ``TrainParams`` (except ``seed``,
which ``seeds`` sets, and ``batch`` / ``record``, which do nothing for the
population engine), ``alpha1``, ``alpha2``, ... / ``pi1``, ... (one entry of
``alpha`` / ``pi``, numbered from 1 as in the paper), ``eta_E_ratio`` (``eta_E =
ratio * eta``) and ``head_tol`` (T4's tolerance on ``|E - I|_F``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._version import __version__
from .analysis import DEFAULT_HEAD_TOL
from .io import atomic_write, write_json
from .params import FEATURES, HEADS, SPLITS, ModelParams, ParamError, TrainParams

FORMAT = "theory-sim-sweep"
FORMAT_VERSION = 1
TABLE = "runs.csv"
MANIFEST = "manifest.json"
PLOT = "phase_diagram.png"
MAX_RUNS = 1_000_000
CONNECT_TIMEOUT = "10s"
"""How long to try to reach ``--scheduler`` before giving up."""
WRITE_EVERY_SECONDS = 2.0
"""The table is rewritten (atomically) at most this often while a sweep runs, and at the end."""


class SweepError(ValueError):
    """A sweep cannot start or continue (bad directory, grid, config); one line."""


class SweepFailed(RuntimeError):
    """A task failed (e.g. a worker was killed too often); the finished rows are saved."""


# ---------------------------------------------------------------- keys

@dataclass(frozen=True)
class Key:
    name: str
    kind: type          # int, float or str
    target: str         # "model", "train" or "sweep"
    help: str
    choices: tuple = ()
    nullable: bool = False  # "none" gives the default (None) of TrainParams


KEYS = {k.name: k for k in (
    Key("d", int, "model", "patch dimension"),
    Key("P", int, "model", "patches per sample"),
    Key("k", int, "model", "feature patches per sample (2..P)"),
    Key("sigma", float, "model", "noise standard deviation"),
    Key("m", int, "model", "neurons"),
    Key("features", str, "model", "basis or random features", FEATURES),
    Key("feature_seed", int, "model", "seed of random features"),
    Key("split", str, "model", "view split", SPLITS),
    Key("eta", float, "train", "learning rate of W"),
    Key("eta_E", float, "train", "learning rate of the head (default eta/10)", nullable=True),
    Key("eta_E_ratio", float, "sweep", "eta_E / eta (instead of eta_E)"),
    Key("head", str, "train", "offdiag, frozen or full", HEADS),
    Key("engine", str, "train", "population only (the batched kernel)", ("population",)),
    Key("steps", int, "train", "fixed number of steps (default: until converged, capped)",
        nullable=True),
    Key("tol", float, "train", "convergence speed"),
    Key("align_threshold", float, "train", "|c_jl| that counts as learned"),
    Key("max_flow_time", float, "train", "cap on eta*steps when steps is not given"),
    Key("max_norm", float, "train", "a row norm beyond this is a divergence"),
    Key("check_every", int, "train", "steps between convergence checks", nullable=True),
    Key("head_tol", float, "sweep", "T4: |E - I|_F below this after T3"),
)}
VECTOR_KEYS = ("alpha", "pi")
"""Base-only keys holding a whole vector (comma-separated); grid them entry by entry."""
NOT_GRID = {
    "seed": "set the seeds with --seeds (or seeds = ... in the config)",
    "seeds": "set the seeds with --seeds (or seeds = ... in the config)",
    "batch": "batch only affects the sgd engine; the sweep runs the population engine",
    "record": "the sweep keeps events at every step instead of a recorded trajectory",
}
_INDEXED = re.compile(r"^(alpha|pi)([1-9][0-9]*)$")


def _canonical(name: str) -> str:
    """The key ``name`` refers to ('-' and '_' alike, case-insensitive); SweepError if none."""
    text = str(name).strip().replace("-", "_")
    low = text.lower()
    if _INDEXED.match(low):
        return low
    for known in (*KEYS, *VECTOR_KEYS):
        if known.lower() == low:
            return known
    if low in NOT_GRID:
        raise SweepError(f"{name!r} is not a sweep key: {NOT_GRID[low]}")
    raise SweepError(f"unknown sweep key {name!r}; known keys: "
                     f"{', '.join(KEYS)}, alpha1, alpha2, ..., pi1, pi2, ...")


def _key_kind(name: str) -> Key:
    if _INDEXED.match(name):
        return Key(name, float, "model", "one entry of alpha/pi")
    return KEYS[name]


def parse_value(name: str, value):
    """One value of key ``name`` (text or a TOML value) -> int, float, str or None."""
    key = _key_kind(name)
    if isinstance(value, str):
        text = value.strip()
        if key.nullable and text.lower() == "none":
            return None
        if key.kind is str:
            if key.choices and text not in key.choices:
                raise SweepError(f"{name} must be one of {', '.join(key.choices)} (got {text!r})")
            return text
        try:
            num = float(text) if key.kind is float else _int_text(text)
        except ValueError:
            kind = "an integer" if key.kind is int else "a number"
            raise SweepError(f"{name} must be {kind} (got {text!r})") from None
        value = num
    if isinstance(value, bool):
        raise SweepError(f"{name} must be {key.kind.__name__} (got {value!r})")
    if key.kind is str:
        if not isinstance(value, str) or (key.choices and value not in key.choices):
            raise SweepError(f"{name} must be one of {', '.join(key.choices)} (got {value!r})")
        return value
    if key.kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise SweepError(f"{name} must be an integer (got {value!r})")
        return int(value)
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise SweepError(f"{name} must be a finite number (got {value!r})")
    return float(value)


def _int_text(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        f = float(text)  # "1e3"
        if not f.is_integer():
            raise
        return int(f)


def parse_values(name: str, text: str) -> tuple:
    """``V1,V2,...``, ``lin:START:STOP:N`` or ``log:START:STOP:N`` -> a tuple of values."""
    text = text.strip()
    spaced = re.match(r"^(lin|log):([^:]+):([^:]+):([^:]+)$", text)
    if spaced:
        how, a, b, n = spaced.groups()
        try:
            a, b, n = float(a), float(b), _int_text(n)
        except ValueError:
            raise SweepError(f"{name}={text}: expected {how}:START:STOP:N with numbers "
                             f"and an integer N") from None
        if n < 1:
            raise SweepError(f"{name}={text}: N must be >= 1")
        if how == "log" and (a <= 0 or b <= 0):
            raise SweepError(f"{name}={text}: log spacing needs START, STOP > 0")
        pts = np.linspace(a, b, n) if how == "lin" else np.geomspace(a, b, n)
        values = tuple(parse_value(name, float(v)) for v in pts)
    else:
        parts = [p for p in (s.strip() for s in text.split(",")) if p != ""]
        if not parts:
            raise SweepError(f"{name}= has no values (expected e.g. {name}=1,2,3)")
        values = tuple(parse_value(name, p) for p in parts)
    return _unique(name, values)


def _unique(name, values):
    seen = []
    for v in values:
        if v in seen:
            raise SweepError(f"{name} lists the value {v!r} twice")
        seen.append(v)
    if not seen:
        raise SweepError(f"{name} has no values")
    return tuple(seen)


def parse_grid_arg(text: str) -> tuple[str, tuple]:
    """``KEY=V1,V2,...`` (or ``KEY=lin:A:B:N`` / ``KEY=log:A:B:N``) -> (key, values)."""
    if "=" not in text:
        raise SweepError(f"--grid {text!r}: expected KEY=V1,V2,... (e.g. alpha1=4,5,6)")
    name, values = text.split("=", 1)
    if not name.strip():
        raise SweepError(f"--grid {text!r}: missing the key before '='")
    key = _canonical(name)
    if key in VECTOR_KEYS:
        raise SweepError(f"--grid {key}: grid one entry at a time ({key}1=..., {key}2=...)")
    return key, parse_values(key, values)


def parse_vector(name: str, value) -> tuple:
    """A base ``alpha`` / ``pi``: ``"6,3"`` or a TOML array."""
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, (int, float)):
        items = [items]
    try:
        out = tuple(float(x) for x in items)
    except (TypeError, ValueError):
        raise SweepError(f"{name} must be comma-separated numbers, e.g. 6,3 (got {value!r})") from None
    if not out or not all(math.isfinite(x) for x in out):
        raise SweepError(f"{name} must be finite numbers (got {value!r})")
    return out


def parse_seeds(value) -> tuple:
    """``N`` (seeds 0..N-1), ``A:B`` (A..B-1), ``S1,S2,...`` or a TOML int / array."""
    if isinstance(value, bool):
        raise SweepError(f"seeds must be a count, A:B or a list (got {value!r})")
    if isinstance(value, int):
        if value < 1:
            raise SweepError(f"seeds must be a count >= 1 (got {value})")
        return tuple(range(value))
    if isinstance(value, (list, tuple)):
        seeds = value
    else:
        text = str(value).strip()
        try:
            if ":" in text:
                a, b = text.split(":", 1)
                a, b = int(a), int(b)
                if b <= a:
                    raise SweepError(f"seeds {text}: the range A:B needs B > A")
                seeds = list(range(a, b))
            elif "," in text:
                seeds = [int(s) for s in text.split(",") if s.strip()]
            else:
                n = int(text)
                if n < 1:
                    raise SweepError(f"seeds must be a count >= 1 (got {n})")
                seeds = list(range(n))
        except ValueError:
            raise SweepError(f"seeds must be a count N, a range A:B or a list S1,S2,... "
                             f"(got {text!r})") from None
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SweepError(f"seeds must be integers >= 0 (got {s!r})")
        out.append(int(s))
    return _unique("seeds", tuple(out))


# ---------------------------------------------------------------- spec

@dataclass(frozen=True)
class SweepSpec:
    """What to run: fixed ``base`` values, ``grid`` [(key, values)], ``seeds``."""

    base: dict = field(default_factory=dict)
    grid: tuple = ()
    seeds: tuple = (TrainParams().seed,)

    def to_dict(self) -> dict:
        """As stored in the manifest (JSON types: compared with it on resume)."""
        return json.loads(json.dumps({"base": dict(self.base),
                                      "grid": [[k, list(v)] for k, v in self.grid],
                                      "seeds": list(self.seeds)}))

    @property
    def n_runs(self) -> int:
        return math.prod(len(v) for _, v in self.grid) * len(self.seeds)


def read_config(path) -> dict:
    """Read a TOML sweep config: ``seeds = ...``, ``[base]`` and ``[grid]`` tables."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise SweepError("--config needs Python >= 3.11 or the tomli package") from None
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SweepError(f"--config {path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"--config {path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"seeds", "base", "grid"}
    if unknown:
        raise SweepError(f"--config {path}: unknown entries {', '.join(sorted(unknown))} "
                         f"(expected seeds, [base], [grid])")
    for name in ("base", "grid"):
        if name in data and not isinstance(data[name], dict):
            raise SweepError(f"--config {path}: {name} must be a table ([{name}])")
    return data


def build_spec(*, base: dict | None = None, grid: Iterable = (), seeds=None,
               config: dict | None = None) -> SweepSpec:
    """Merge a config (from :func:`read_config`) with command-line values (which win).

    ``base``: {key: value} with values as text or numbers; ``grid``: [(key, values)]
    from :func:`parse_grid_arg`; ``seeds``: anything :func:`parse_seeds` takes.
    """
    config = config or {}
    merged: dict = {}
    for source in (config.get("base", {}), base or {}):
        for name, value in source.items():
            if value is None:
                continue
            key = _canonical(name)
            merged[key] = parse_vector(key, value) if key in VECTOR_KEYS else parse_value(key, value)
    g: dict = {}
    for name, values in config.get("grid", {}).items():
        key = _canonical(name)
        if key in VECTOR_KEYS:
            raise SweepError(f"[grid] {key}: grid one entry at a time ({key}1 = [...])")
        if isinstance(values, str):
            vals = parse_values(key, values)
        elif isinstance(values, list):
            vals = _unique(key, tuple(parse_value(key, v) for v in values))
        else:
            vals = (parse_value(key, values),)
        g[key] = vals
    cli_keys = set()
    for key, values in grid:
        if key in cli_keys:
            raise SweepError(f"--grid {key} is given twice")
        cli_keys.add(key)
        g[key] = values  # the command line wins over the config
    for key in g:
        if key in merged and key not in VECTOR_KEYS:
            merged.pop(key)  # a grid key overrides a fixed value of the same key
    keys = set(merged) | set(g)
    if "eta_E" in keys and "eta_E_ratio" in keys:
        raise SweepError("give eta_E or eta_E_ratio, not both")
    if seeds is None:
        seeds = config.get("seeds", (TrainParams().seed,))
    seeds = parse_seeds(seeds) if not isinstance(seeds, tuple) else parse_seeds(list(seeds))
    spec = SweepSpec(base=merged, grid=tuple(g.items()), seeds=seeds)
    if spec.n_runs > MAX_RUNS:
        raise SweepError(f"the grid has {spec.n_runs} runs; the limit is {MAX_RUNS}")
    return spec


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: its position, parameters and identity."""

    index: int          # position in the table (grid order, seeds innermost)
    cell: int           # index of the parameter point (without the seed)
    values: dict        # the grid values of this point
    model: ModelParams
    train: TrainParams
    head_tol: float
    run_id: str


def _resolve(base: dict, values: dict, seed: int):
    p = {**base, **values}
    model_kw = {k: v for k, v in p.items() if k in KEYS and KEYS[k].target == "model"}
    alpha = list(p.get("alpha", ModelParams().alpha))
    pi = list(p["pi"]) if "pi" in p else None
    for name, v in p.items():
        m = _INDEXED.match(name)
        if m:
            vec = alpha if m.group(1) == "alpha" else pi
            if vec is None:  # default pi: uniform over the features
                pi = [1.0 / len(alpha)] * len(alpha)
                vec = pi
            i = int(m.group(2)) - 1
            if i >= len(vec):
                raise ParamError(f"{name}: there are only {len(vec)} features (set --alpha "
                                 f"with more entries to sweep {name})")
            vec[i] = v
    if pi is None:
        pi = [1.0 / len(alpha)] * len(alpha)
    model = ModelParams(**model_kw, alpha=tuple(alpha), pi=tuple(pi))
    train_kw = {k: v for k, v in p.items() if k in KEYS and KEYS[k].target == "train"}
    if "eta_E_ratio" in p:
        ratio = p["eta_E_ratio"]
        if ratio < 0:
            raise ParamError(f"eta_E_ratio must be >= 0 (got {ratio!r})")
        train_kw["eta_E"] = ratio * train_kw.get("eta", TrainParams().eta)
    train = TrainParams(**train_kw, seed=seed)
    head_tol = p.get("head_tol", DEFAULT_HEAD_TOL)
    if not head_tol > 0:
        raise ParamError(f"head_tol must be > 0 (got {head_tol!r})")
    return model, train, float(head_tol)


def run_id(model: ModelParams, train: TrainParams, head_tol: float) -> str:
    """A stable identity of a run: a hash of every parameter that affects its row."""
    text = json.dumps({"model": model.to_dict(), "train": train.to_dict(), "head_tol": head_tol},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def expand(spec: SweepSpec) -> list[Cell]:
    """Every run of ``spec`` in table order, validated (ParamError names the grid point)."""
    keys = [k for k, _ in spec.grid]
    cells = []
    for ci, combo in enumerate(itertools.product(*(v for _, v in spec.grid))):
        values = dict(zip(keys, combo, strict=True))
        for seed in spec.seeds:
            try:
                model, train, htol = _resolve(spec.base, values, seed)
            except ParamError as exc:
                where = ", ".join(f"{k}={v}" for k, v in values.items()) or "the base values"
                raise ParamError(f"{exc} (at {where})") from None
            cells.append(Cell(len(cells), ci, values, model, train, htol,
                              run_id(model, train, htol)))
    return cells


# ---------------------------------------------------------------- table

def _shape(cells: list[Cell]):
    m = max((c.model.m for c in cells), default=2)
    L = max((c.model.L for c in cells), default=2)
    return m, L


def columns(cells: list[Cell]) -> list[str]:
    """The table's columns for these runs (entries up to the largest m and L)."""
    m, L = _shape(cells)
    cols = ["run_id", "cell", "seed", "d", "P", "k"]
    cols += [f"alpha{l + 1}" for l in range(L)] + [f"pi{l + 1}" for l in range(L)]
    cols += ["sigma", "m", "features", "feature_seed", "split",
             "eta", "eta_E", "eta_E_ratio", "head", "steps", "max_steps", "tol", "align_threshold",
             "max_flow_time", "max_norm", "check_every", "head_tol",
             "status", "n_steps", "flow_time", "T1", "T2", "T3", "T4",
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
    "T1..T4": "phase times in steps (MODEL.md section 9, analysis.phase_times at every step); "
              "empty: not reached",
    "leader, follower": "neuron numbers (1-based, as in the paper) of the phase times",
    "c_j_l": "final |c_jl| = |<w_j, v_l>| / |w_j| (1-based j, l)",
    "E_peak_j_r": "max over the run of |E_jr| (1-based j != r)",
    "E_peak_follower_leader": "max |E_{follower,leader}| (the head entry of phase II)",
    "head_distance": "final |E - I|_F",
    "loss": "final population loss",
    "outcome": "diverse, collapsed or incomplete (analysis.outcome; also incomplete when the "
               "flow-time cap stopped the run)",
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


def make_row(cell: Cell, res: dict, cols: list[str]) -> dict:
    """The table row (all values as text) of one finished run."""
    model, train = cell.model, cell.train
    eta = train.eta
    row = {"run_id": cell.run_id, "cell": cell.cell, "seed": train.seed, "d": model.d, "P": model.P,
           "k": model.k, "sigma": model.sigma, "m": model.m, "features": model.features,
           "feature_seed": model.feature_seed, "split": model.split, "eta": eta,
           "eta_E": train.eta_E, "eta_E_ratio": train.eta_E / eta, "head": train.head,
           "steps": train.steps, "max_steps": train.max_steps, "tol": train.tol,
           "align_threshold": train.align_threshold, "max_flow_time": train.max_flow_time,
           "max_norm": train.max_norm, "check_every": train.check_interval,
           "head_tol": cell.head_tol, "status": res["status"], "n_steps": res["steps"],
           "flow_time": res["flow_time"], "head_distance": res["head_distance"],
           "loss": res["loss"], "outcome": res["outcome"]}
    for l in range(model.L):
        row[f"alpha{l + 1}"] = model.alpha[l]
        row[f"pi{l + 1}"] = model.pi[l]
    for t in ("T1", "T2", "T3", "T4"):
        row[t] = res[t]
        row[f"{t}_flow"] = None if res[t] is None else res[t] * eta
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


def read_table(path) -> tuple[list[str], list[dict]]:
    """``(columns, rows)`` of a table written by :func:`write_table` (values as text)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            cols = list(reader.fieldnames or [])
            rows = []
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise SweepError(f"{path}: line {reader.line_num} does not have "
                                     f"{len(cols)} fields")
                rows.append(row)
    except OSError as exc:
        raise SweepError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except csv.Error as exc:
        raise SweepError(f"{path}: not a readable CSV table ({exc})") from None
    return cols, rows


def table_columns(path) -> dict[str, np.ndarray]:
    """The table as columns: numbers as float arrays (NaN where empty), text as str arrays."""
    cols, rows = read_table(path)
    out = {}
    for c in cols:
        vals = [r[c] for r in rows]
        try:
            out[c] = np.array([float(v) if v != "" else np.nan for v in vals])
        except ValueError:
            out[c] = np.array(vals, dtype=str)
    return out


# ---------------------------------------------------------------- execution

ProgressFn = Callable[[int, int], None]


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


def _payload(cells: list[Cell]) -> list:
    return [(c.index, c.cell, c.model.to_dict(), c.train.to_dict(), c.head_tol) for c in cells]


def run_chunk(payload: list, cols: list[str], *, parallel: bool = False) -> tuple[str, list]:
    """Run one chunk of cells (a Dask task); return ``(version, [(index, row), ...])``."""
    from .batched import simulate_many

    models, trains, tols, idx = [], [], [], []
    for index, cell, model_d, train_d, head_tol in payload:
        model_d = dict(model_d, alpha=tuple(model_d["alpha"]), pi=tuple(model_d["pi"]))
        models.append(ModelParams(**model_d))
        trains.append(TrainParams(**train_d))
        tols.append(head_tol)
        idx.append((index, cell))
    results = simulate_many(models, trains, head_tol=tols, parallel=parallel)
    rows = []
    for (index, ci), model, train, htol, res in zip(idx, models, trains, tols, results,
                                                    strict=True):
        if res["status"] == "interrupted":
            continue
        cell = Cell(index, ci, {}, model, train, htol, run_id(model, train, htol))
        rows.append((index, make_row(cell, res, cols)))
    return __version__, rows


def _chunks(cells: list[Cell], size: int) -> list[list[Cell]]:
    """Chunks of at most ``size`` runs, each of one shape (one kernel batch)."""
    groups: dict = {}
    for c in cells:
        groups.setdefault((c.model.m, c.model.L, min(c.model.d, c.model.m + c.model.L)), []).append(c)
    out = []
    for g in groups.values():
        out += [g[i:i + size] for i in range(0, len(g), size)]
    return out


@dataclass
class SweepResult:
    out: Path
    n_runs: int
    n_done: int
    n_new: int
    complete: bool
    status: str          # complete, stopped (max_chunks), interrupted or failed
    elapsed: float
    message: str = ""


class _Store:
    """The sweep directory: manifest, the table, and the finished rows in memory."""

    def __init__(self, out: Path, spec: SweepSpec, cells: list[Cell]):
        self.out = Path(out)
        self.cells = cells
        self.cols = columns(cells)
        self.pos = {c.run_id: c.index for c in cells}
        self.rows: dict[int, dict] = {}
        self.spec = spec.to_dict()
        self.manifest = None
        if self.out.exists() and not self.out.is_dir():
            raise SweepError(f"--out {self.out} exists and is not a directory")
        mpath = self.out / MANIFEST
        if mpath.exists():
            self._load_existing(mpath)
        elif self.out.exists() and any(self.out.iterdir()):
            raise SweepError(f"--out {self.out} exists and is not a theory-sim sweep "
                             f"(no {MANIFEST}); choose another --out")
        self.last_write = 0.0
        self.dirty = False

    def _load_existing(self, mpath):
        manifest = read_manifest(mpath)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise SweepError(f"{mpath}: sweep format version {manifest.get('format_version')!r}, "
                             f"this theory-sim reads version {FORMAT_VERSION}")
        if manifest.get("spec") != self.spec:
            raise SweepError(f"--out {self.out} holds a different sweep (its grid, seeds or fixed "
                             f"values differ); choose another --out to run this one")
        self.manifest = manifest
        tpath = self.out / TABLE
        if tpath.exists():
            cols, rows = read_table(tpath)
            if cols != self.cols:
                raise SweepError(f"{tpath}: its columns differ from this sweep's; "
                                 f"choose another --out")
            for n, row in enumerate(rows):
                i = self.pos.get(row["run_id"])
                if i is None:
                    raise SweepError(f"{tpath}: row {n + 1} (run_id {row['run_id']}) is not a "
                                     f"run of this sweep")
                self.rows.setdefault(i, row)

    def start(self, execution: dict) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepError(f"--out {self.out} is not writable ({exc.strerror or exc})") from None
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


def default_chunk_size(n_missing: int, n_threads: int) -> int:
    """About 32 tasks per thread, at most 16 runs each: runs differ a lot in length, and
    the last tasks should be short (a task costs the scheduler ~ms, a run ~0.1-1 s)."""
    return int(min(16, max(1, math.ceil(n_missing / max(1, 32 * n_threads)))))


def run_sweep(spec: SweepSpec, out, *, executor: str = "dask", scheduler: str | None = None,
              workers: int | None = None, threads_per_worker: int | None = None,
              chunk_size: int | None = None, max_chunks: int | None = None,
              progress: ProgressFn | None = None, command: list | None = None) -> SweepResult:
    """Run the missing rows of ``spec`` into the directory ``out`` (see the module docstring).

    ``executor``: ``"dask"`` (a ``LocalCluster`` with ``workers`` x ``threads_per_worker``,
    by default one single-threaded worker per core, or the cluster at ``scheduler``) or
    ``"serial"`` (this process). ``max_chunks``: stop after that many chunks (the rest
    runs next time). ``progress(done, total)`` counts runs, finished ones included.
    Ctrl-C saves the finished rows and re-raises ``KeyboardInterrupt``; a failed task
    saves them and raises :class:`SweepFailed`.
    """
    if executor not in ("dask", "serial"):
        raise SweepError(f"executor must be dask or serial (got {executor!r})")
    for name, v in (("workers", workers), ("threads_per_worker", threads_per_worker),
                    ("chunk_size", chunk_size), ("max_chunks", max_chunks)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SweepError(f"{name.replace('_', '-')} must be an integer >= 1 (got {v!r})")
    if executor == "serial" and (scheduler or workers or threads_per_worker):
        raise SweepError("--scheduler, --workers and --threads-per-worker need the dask executor "
                         "(drop --serial)")
    if scheduler and (workers or threads_per_worker):
        raise SweepError("--workers and --threads-per-worker size a local cluster; "
                         "with --scheduler the cluster is already sized")
    t0 = time.perf_counter()
    cells = expand(spec)
    store = _Store(out, spec, cells)
    missing = store.missing()
    execution = {"executor": executor, "command": command}
    runner = None
    if executor == "dask" and missing:
        runner = _DaskRunner(scheduler, workers, threads_per_worker)
        execution.update(runner.describe())
    try:
        store.start(execution)
    except BaseException:
        if runner is not None:
            runner.close()
        raise
    n_threads = runner.n_threads if runner is not None else 1
    if chunk_size is None:
        chunk_size = default_chunk_size(len(missing), n_threads) if runner else 256
    chunks = _chunks(missing, chunk_size)
    if max_chunks is not None:
        chunks = chunks[:max_chunks]
    total = len(cells)
    done = len(store.rows)
    n_new = 0
    status = "failed"
    message = ""
    if progress is not None:
        progress(done, total)
    try:
        if runner is None:
            for chunk in chunks:
                base = done

                def inner(k, _n, base=base):
                    if progress is not None:
                        progress(base + k, total)

                rows = _run_local(chunk, store.cols, inner)
                n_new += store.add(rows)
                done = len(store.rows)
                store.flush()
                if progress is not None:
                    progress(done, total)
        else:
            for rows in runner.run([_payload(c) for c in chunks], store.cols):
                n_new += store.add(rows)
                done = len(store.rows)
                store.flush()
                if progress is not None:
                    progress(done, total)
        complete = len(store.rows) == total
        status = "complete" if complete else "stopped"
    except KeyboardInterrupt as exc:
        status = "interrupted"
        if isinstance(exc, _Interrupted):
            n_new += store.add(exc.rows)
        raise
    except SweepFailed as exc:
        message = str(exc)
        raise
    finally:
        with contextlib.suppress(Exception):
            if runner is not None:
                runner.close()
        store.finish(status, n_new)
    return SweepResult(store.out, total, len(store.rows), n_new, status == "complete", status,
                       time.perf_counter() - t0, message)


def _run_local(chunk: list[Cell], cols, progress):
    """A chunk in this process (the kernel uses numba's threads); Ctrl-C propagates."""
    from .batched import simulate_many

    results = simulate_many([c.model for c in chunk], [c.train for c in chunk],
                            head_tol=[c.head_tol for c in chunk], parallel=True,
                            progress=progress)
    rows = [(c.index, make_row(c, r, cols)) for c, r in zip(chunk, results, strict=True)
            if r["status"] != "interrupted"]
    if len(rows) < len(chunk):  # simulate_many swallowed a Ctrl-C: keep what finished
        raise _Interrupted(rows)
    return rows


class _Interrupted(KeyboardInterrupt):
    def __init__(self, rows):
        super().__init__()
        self.rows = rows


class _DaskRunner:
    """Submit chunks to a Dask cluster (a LocalCluster we own, or one at an address)."""

    def __init__(self, scheduler, workers, threads_per_worker):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SweepError("the dask executor needs dask[distributed] "
                             "(pip install 'theory-sim[sweep]'), or pass --serial") from None
        import logging

        self.cluster = None
        self.scheduler = scheduler
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as exc:
                raise SweepError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        else:
            n = workers or _cpu_count()
            tpw = threads_per_worker or 1
            with _children_ignore_sigint():
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=tpw, processes=True,
                                            dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        info = self.client.scheduler_info()
        self.n_workers = len(info.get("workers", {}))
        self.n_threads = max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def describe(self) -> dict:
        return {"scheduler": self.scheduler or "local", "workers": self.n_workers,
                "threads": self.n_threads}

    def run(self, payloads: list, cols):
        from distributed import as_completed

        futures = [self.client.submit(run_chunk, p, cols, pure=False) for p in payloads]
        self.futures = futures
        try:
            for fut in as_completed(futures):
                try:
                    version, rows = fut.result()
                except Exception as exc:  # a task failed: e.g. its worker was killed too often
                    raise SweepFailed(f"a chunk of runs failed on the cluster "
                                      f"({type(exc).__name__}: {exc}); the finished runs are "
                                      f"saved, rerun the same command to continue") from None
                if version != __version__:
                    raise SweepFailed(f"the workers run theory-sim {version}, this client "
                                      f"{__version__}; install the same version on both")
                fut.release()
                yield rows
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self):
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


@contextlib.contextmanager
def _children_ignore_sigint():
    """Start worker processes with SIGINT ignored: a Ctrl-C in the terminal reaches the
    whole process group, and it is this process that stops the sweep (saving the table
    and closing the cluster), not the workers, each with a traceback of its own."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------- plotting

def read_manifest(mpath: Path) -> dict:
    """The sweep manifest at ``mpath``, or a one-line ``SweepError``."""
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SweepError(f"{mpath}: not a readable sweep manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SweepError(f"{mpath}: not a theory-sim sweep manifest")
    return manifest


def load_sweep(directory) -> tuple[dict, dict[str, np.ndarray]]:
    """``(manifest, table columns)`` of a sweep directory."""
    directory = Path(directory)
    mpath, tpath = directory / MANIFEST, directory / TABLE
    if not mpath.exists():
        raise SweepError(f"{directory}: not a theory-sim sweep directory (no {MANIFEST})")
    manifest = read_manifest(mpath)
    if not tpath.exists():
        raise SweepError(f"{directory}: no {TABLE} yet (no run has finished)")
    return manifest, table_columns(tpath)


def plot_axes(manifest: dict, table: dict, x: str | None = None, y: str | None = None):
    """``(x, y, note)`` for the phase diagram of a sweep: by default the first two grid
    keys with more than one value; ``note`` says how many runs and what is pooled."""
    grid_keys = [k for k, v in manifest["spec"]["grid"] if len(v) > 1]
    x = _canonical(x) if x else (grid_keys[0] if grid_keys else None)
    y = _canonical(y) if y else (next((k for k in grid_keys if k != x), None))
    if x is None:
        raise SweepError("the sweep has no grid key with more than one value to plot against")
    for k in (x, y):
        if k is not None and k not in table:
            raise SweepError(f"{k} is not a column of the table")
    pooled = [k for k in grid_keys if k not in (x, y)]
    n = manifest.get("n_runs")
    done = len(table["run_id"]) if "run_id" in table else 0
    note = f"{done} of {n} runs" if n and done < n else f"{done} runs"
    if pooled:
        note += "; pooled over " + ", ".join(pooled)
    return x, y, note
