"""What a sweep runs: the key registry, value parsing, the TOML config, merging the config
with explicit values, and resolving each grid point into validated parameters.

The key registry (:data:`KEYS`, :data:`VECTOR_KEYS`, :data:`NOT_GRID`) is the one list of
what a sweep may set; everything else here reads it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..analysis import DEFAULT_HEAD_TOL
from ..params import PARAMETERS, ModelParams, ParamError, TrainParams, uniform_pi

MAX_RUNS = 1_000_000
"""Most runs in one sweep (grid points x seeds); checked before any run is materialised."""
MAX_GRID_POINTS = 10_000
"""Most values of one grid key (``lin:A:B:N`` / ``log:A:B:N`` included); checked before
the values are made."""


class SweepError(ValueError):
    """A sweep cannot start or continue (bad directory, grid, config); one line.

    ``param`` names the parameter at fault (``out``, ``grid``, ``seeds``, ...) when there is
    one, so that a front end can point at its own spelling of it (the CLI adds the flag).
    """

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


class SweepInUse(SweepError):
    """Another process is running a sweep into the same directory (it holds its lock)."""


@dataclass(frozen=True)
class Key:
    """One sweep key: its type, where it goes (``ModelParams``, ``TrainParams`` or the sweep
    itself), its help text, its choices and whether ``none`` is a value."""

    name: str
    kind: type          # int, float or str
    target: str         # "model", "train" or "sweep"
    help: str
    choices: tuple = ()
    nullable: bool = False  # "none" gives the default (None) of TrainParams


_SWEEP_KEYS_AFTER = {  # the sweep's own keys, each after the parameter it belongs with
    "eta_E": (Key("eta_E_ratio", float, "sweep", "eta_E / eta (instead of eta_E)"),),
    "check_every": (Key("head_tol", float, "sweep", "T4: |E - I|_F below this after T3"),),
}
_NOT_GRID_WHY = {
    "seed": "the seeds of a sweep are its own parameter, seeds",
    "batch": "batch only affects the sgd engines; the sweep runs population runs",
    "record": "the sweep keeps events at every step instead of a recorded trajectory",
}


def batched_engines() -> tuple:
    """The engines a sweep can run: those of the registry that the batched kernel
    (:func:`theory_sim.ensemble.simulate_many`) supports."""
    from ..ensemble import BATCHED_ENGINES

    return tuple(name for name in KEYS["engine"].choices if name in BATCHED_ENGINES)


def _keys() -> dict:
    """The sweep keys, generated from the parameter registry (``params.PARAMETERS``): every
    sweepable scalar parameter, plus the sweep's own keys (:data:`_SWEEP_KEYS_AFTER`)."""
    keys = {}
    for par in PARAMETERS:
        if par.sweepable and par.kind != "floats":
            keys[par.name] = Key(par.name, par.kind, par.owner, par.help,
                                 tuple(par.choice_list or ()), nullable=par.default is None)
        keys.update((k.name, k) for k in _SWEEP_KEYS_AFTER.get(par.name, ()))
    for own in _SWEEP_KEYS_AFTER.values():  # whatever becomes of their neighbours
        for k in own:
            keys.setdefault(k.name, k)
    return keys


KEYS = _keys()
"""The one registry of sweep keys (name -> :class:`Key`); everything else in the package reads it.
The engine's choices are checked at parse time against :func:`batched_engines`."""
VECTOR_KEYS = tuple(par.name for par in PARAMETERS if par.kind == "floats")
"""Base-only keys holding a whole vector (comma-separated); grid them entry by entry."""
NOT_GRID = {par.name: _NOT_GRID_WHY.get(par.name, f"{par.name} cannot be swept")
            for par in PARAMETERS if not par.sweepable}
NOT_GRID["seeds"] = NOT_GRID.get("seed", "the seeds of a sweep are its own parameter, seeds")
_INDEXED = re.compile(r"^(alpha|pi)([1-9][0-9]*)$")


def canonical_key(name: str) -> str:
    """The key ``name`` refers to ('-' and '_' alike, case-insensitive); SweepError if none."""
    text = str(name).strip().replace("-", "_")
    low = text.lower()
    if _INDEXED.match(low):
        return low
    for known in (*KEYS, *VECTOR_KEYS):
        if known.lower() == low:
            return known
    if low in NOT_GRID:
        raise SweepError(f"{name!r} is not a sweep key: {NOT_GRID[low]}",
                         param="seeds" if low in ("seed", "seeds") else None)
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
            value = text
        else:
            try:
                value = float(text) if key.kind is float else _int_text(text)
            except (ValueError, OverflowError):  # OverflowError: "1e400" as an integer
                kind = "an integer" if key.kind is int else "a number"
                raise SweepError(f"{name} must be {kind} (got {text!r})") from None
    if isinstance(value, bool):
        raise SweepError(f"{name} must be {key.kind.__name__} (got {value!r})")
    if key.kind is str:
        if not isinstance(value, str) or (key.choices and value not in key.choices):
            raise SweepError(f"{name} must be one of {', '.join(key.choices)} (got {value!r})")
        if name == "engine" and value not in batched_engines():
            raise SweepError(f"engine {value} cannot be swept: a sweep runs its runs through the "
                             f"batched kernel (ensemble.simulate_many), which supports "
                             f"{', '.join(batched_engines())}")
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
    if not spaced and re.match(r"^(lin|log):", text):
        how = text[:3]
        parts = text.split(":")[1:]
        missing = ("START:STOP:N" if not any(parts) else "N, the number of points" if len(parts) == 2
                   else "STOP and N" if len(parts) == 1 else "")
        raise SweepError(f"{name}={text}: expected {how}:START:STOP:N"
                         + (f" (missing {missing})" if missing else ""), param="grid")
    if spaced:
        how, a, b, n = spaced.groups()
        try:
            a, b, n = float(a), float(b), _int_text(n)
        except ValueError:
            raise SweepError(f"{name}={text}: expected {how}:START:STOP:N with numbers "
                             f"and an integer N") from None
        if n < 1:
            raise SweepError(f"{name}={text}: N must be >= 1")
        if n > MAX_GRID_POINTS:
            raise SweepError(f"{name}={text}: N = {n} points; the limit is {MAX_GRID_POINTS} "
                             f"points per grid key", param="grid")
        if how == "log" and (a <= 0 or b <= 0):
            raise SweepError(f"{name}={text}: log spacing needs START, STOP > 0")
        pts = np.linspace(a, b, n) if how == "lin" else np.geomspace(a, b, n)
        # 15 significant digits: lin:0.1:0.3:3 gives 0.2, not linspace's 0.20000000000000001
        values = tuple(parse_value(name, _round15(v)) for v in pts)
    else:
        parts = [p for p in (s.strip() for s in text.split(",")) if p != ""]
        if not parts:
            raise SweepError(f"{name}= has no values (expected e.g. {name}=1,2,3)")
        if len(parts) > MAX_GRID_POINTS:
            raise SweepError(f"{name}: {len(parts)} values; the limit is {MAX_GRID_POINTS} "
                             f"values per grid key", param="grid")
        values = tuple(parse_value(name, p) for p in parts)
    return _unique(name, values)


def _round15(x: float) -> float:
    """``x`` to 15 significant digits: drops the float noise of a product or a linspace."""
    return float(f"{x:.15g}")


def _unique(name, values):
    values = tuple(values)
    seen = set()
    for v in values:
        if v in seen:
            raise SweepError(f"{name} lists the value {v!r} twice")
        seen.add(v)
    if not values:
        raise SweepError(f"{name} has no values")
    return values


def parse_grid_arg(text: str) -> tuple[str, tuple]:
    """``KEY=V1,V2,...`` (or ``KEY=lin:A:B:N`` / ``KEY=log:A:B:N``) -> (key, values)."""
    if "=" not in text:
        raise SweepError(f"grid entry {text!r}: expected KEY=V1,V2,... (e.g. alpha1=4,5,6)", param="grid")
    name, values = text.split("=", 1)
    if not name.strip():
        raise SweepError(f"grid entry {text!r}: missing the key before '='", param="grid")
    key = canonical_key(name)
    if key in VECTOR_KEYS:
        raise SweepError(f"grid key {key}: grid one entry at a time ({key}1=..., {key}2=...)",
                         param="grid")
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


MAX_SEED = 2**63 - 1
"""Largest seed (``TrainParams.seed``)."""


def _seed_range(a: int, b: int, text) -> range:
    """The seeds ``a..b-1``, refused before they are made if there are too many."""
    if b - a > MAX_RUNS:
        raise SweepError(f"seeds {text} is {b - a} seeds; a sweep has at most {MAX_RUNS} runs "
                         f"(grid points x seeds)", param="seeds")
    return range(a, b)


def parse_seeds(value) -> tuple:
    """``N`` (seeds 0..N-1), ``A:B`` (A..B-1), ``S1,S2,...`` or a TOML int / array."""
    if isinstance(value, bool):
        raise SweepError(f"seeds must be a count, A:B or a list (got {value!r})", param="seeds")
    if isinstance(value, int):
        if value < 1:
            raise SweepError(f"seeds must be a count >= 1 (got {value})", param="seeds")
        seeds = _seed_range(0, value, value)
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_RUNS:
            raise SweepError(f"seeds: {len(value)} seeds; the limit is {MAX_RUNS} runs per sweep",
                             param="seeds")
        seeds = value
    else:
        text = str(value).strip()
        try:
            if ":" in text:
                a, b = text.split(":", 1)
                a, b = int(a), int(b)
                if b <= a:
                    raise SweepError(f"seeds {text}: the range A:B needs B > A", param="seeds")
                seeds = _seed_range(a, b, text)
            elif "," in text:
                seeds = [int(s) for s in text.split(",") if s.strip()]
                if len(seeds) > MAX_RUNS:
                    raise SweepError(f"seeds: {len(seeds)} seeds; the limit is {MAX_RUNS} runs "
                                     f"per sweep", param="seeds")
            else:
                n = int(text)
                if n < 1:
                    raise SweepError(f"seeds must be a count >= 1 (got {n})", param="seeds")
                seeds = _seed_range(0, n, text)
        except ValueError as exc:
            if isinstance(exc, SweepError):
                raise
            raise SweepError(f"seeds must be a count N, a range A:B or a list S1,S2,... "
                             f"(got {text!r})", param="seeds") from None
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise SweepError(f"seeds must be integers in [0, {MAX_SEED}] (got {s!r})", param="seeds")
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
            raise SweepError("a TOML config needs Python >= 3.11 or the tomli package",
                             param="config") from None
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block the open forever
        raise SweepError(f"config {path}: not a regular file", param="config")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SweepError(f"config {path}: cannot read ({exc.strerror or exc})", param="config") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"config {path}: not valid TOML ({exc})", param="config") from None
    except UnicodeDecodeError:
        raise SweepError(f"config {path}: not a TOML file (binary data, not UTF-8 text)",
                         param="config") from None
    unknown = set(data) - {"seeds", "base", "grid"}
    if unknown:
        raise SweepError(f"config {path}: unknown entries {', '.join(sorted(unknown))} "
                         f"(expected seeds, [base], [grid])", param="config")
    for name in ("base", "grid"):
        if name in data and not isinstance(data[name], dict):
            raise SweepError(f"config {path}: {name} must be a table ([{name}])", param="config")
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
            key = canonical_key(name)
            merged[key] = parse_vector(key, value) if key in VECTOR_KEYS else parse_value(key, value)
    g: dict = {}
    for name, values in config.get("grid", {}).items():
        key = canonical_key(name)
        if key in VECTOR_KEYS:
            raise SweepError(f"[grid] {key}: grid one entry at a time ({key}1 = [...])")
        if isinstance(values, str):
            vals = parse_values(key, values)
        elif isinstance(values, list):
            if len(values) > MAX_GRID_POINTS:
                raise SweepError(f"[grid] {key}: {len(values)} values; the limit is "
                                 f"{MAX_GRID_POINTS} values per grid key", param="config")
            vals = _unique(key, tuple(parse_value(key, v) for v in values))
        else:
            vals = (parse_value(key, values),)
        g[key] = vals
    cli_keys = set()
    for key, values in grid:
        if key in cli_keys:
            raise SweepError(f"grid key {key} is given twice", param="grid")
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
    _check_engine_options(merged, g)
    spec = SweepSpec(base=merged, grid=tuple(g.items()), seeds=seeds)
    check_size(spec)
    return spec


def _check_engine_options(base: dict, grid: dict) -> None:
    """Refuse a key that only some engine reads (``Engine.options``, e.g. ``rtol`` of the flow
    engine) when no engine of the sweep reads it: its values would change nothing but the
    run ids, and every row would be the same run."""
    from ..engines import ENGINES

    if "engine" in grid:
        used = set(grid["engine"])
    else:
        used = {base.get("engine", TrainParams().engine)}
    owners: dict[str, list[str]] = {}
    for name, engine in ENGINES.items():
        for option in engine.options:
            owners.setdefault(option, []).append(name)
    for key in (*grid, *base):
        if key in owners and not used & set(owners[key]):
            where = "grid key" if key in grid else "value"
            raise SweepError(f"{where} {key} only affects the {' and '.join(owners[key])} engine, and this "
                             f"sweep runs {', '.join(sorted(used))}: drop it, or set --engine "
                             f"{owners[key][0]}", param="grid" if key in grid else key)


def check_size(spec: SweepSpec) -> None:
    """Refuse a sweep of more than :data:`MAX_RUNS` runs, before any run is made."""
    for key, values in spec.grid:
        if len(values) > MAX_GRID_POINTS:
            raise SweepError(f"grid key {key} has {len(values)} values; the limit is "
                             f"{MAX_GRID_POINTS} values per grid key", param="grid")
    if spec.n_runs > MAX_RUNS:
        raise SweepError(f"the sweep has {spec.n_runs} runs (grid points x seeds); the limit is "
                         f"{MAX_RUNS} runs per sweep", param="grid")


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
    eta_E_ratio: float | None = None  # as given (the table's column; eta_E / eta carries rounding)


def _resolve(base: dict, values: dict, seed: int):
    p = {**base, **values}
    model_kw = {k: v for k, v in p.items() if k in KEYS and KEYS[k].target == "model"}
    alpha = list(p.get("alpha", ModelParams().alpha))
    pi = list(p["pi"]) if "pi" in p else None
    for name, v in p.items():
        m = _INDEXED.match(name)
        if m:
            vec = alpha if m.group(1) == "alpha" else pi
            if vec is None:  # the default pi (params' rule), then this entry changed
                pi = list(uniform_pi(len(alpha)))
                vec = pi
            i = int(m.group(2)) - 1
            if i >= len(vec):
                raise ParamError(f"{name}: there are only {len(vec)} features (give alpha "
                                 f"with more entries to sweep {name})")
            vec[i] = v
    model = ModelParams(**model_kw, alpha=tuple(alpha), pi=None if pi is None else tuple(pi))
    train_kw = {k: v for k, v in p.items() if k in KEYS and KEYS[k].target == "train"}
    if "eta_E_ratio" in p:
        ratio = p["eta_E_ratio"]
        if ratio < 0:
            raise ParamError(f"eta_E_ratio must be >= 0 (got {ratio!r})")
        # 15 significant digits: 0.003 * 0.05 is 0.00015, not 0.00015000000000000001 (the run
        # uses, and the table shows, the round number; the product is exact to 1e-15)
        train_kw["eta_E"] = _round15(ratio * train_kw.get("eta", TrainParams().eta))
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
    check_size(spec)
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
            cells.append(Cell(len(cells), ci, values, model, train, htol, run_id(model, train, htol),
                              {**spec.base, **values}.get("eta_E_ratio")))
    return cells


