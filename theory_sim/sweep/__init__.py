"""Parameter sweeps: grids of (parameters, seed) runs, one tidy table, resumable.

A sweep is a *spec*: fixed ``base`` values, a ``grid`` (an ordered list of keys,
each with its values; the runs are their Cartesian product) and ``seeds``. Every run
is a population run (docs/model.md section 6) done by the batched kernel
(:func:`theory_sim.ensemble.simulate_many`); its row in the table holds every
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

Grid keys: every sweepable scalar of the parameter registry ``params.PARAMETERS``
(generated from it: not ``seed``, which ``seeds`` sets, nor ``batch`` / ``record``,
which do nothing for the population engine; ``engine`` only among the engines the
batched kernel runs, :func:`batched_engines`), ``alpha1``, ``alpha2``, ... / ``pi1``, ... (one entry of
``alpha`` / ``pi``, numbered from 1 as in the paper), ``eta_E_ratio`` (``eta_E =
ratio * eta``) and ``head_tol`` (T4's tolerance on ``|E - I|_F``).

The package: ``spec`` (key registry, value parsing, config, merging, resolution),
``table`` (the CSV schema, the manifest, the resumable store) and ``execute`` (serial
and Dask execution). The phase diagram of a sweep is drawn by ``theory_sim.plotting``.
"""

from __future__ import annotations

from .execute import (
    CONNECT_TIMEOUT,
    SweepFailed,
    SweepResult,
    default_chunk_size,
    run_chunk,
    run_sweep,
)
from .spec import (
    KEYS,
    MAX_GRID_POINTS,
    MAX_RUNS,
    NOT_GRID,
    VECTOR_KEYS,
    Cell,
    Key,
    SweepError,
    SweepInUse,
    SweepSpec,
    batched_engines,
    build_spec,
    canonical_key,
    check_size,
    expand,
    parse_grid_arg,
    parse_seeds,
    parse_value,
    parse_values,
    parse_vector,
    read_config,
    run_id,
)
from .table import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PLOT,
    RESULT_DOC,
    TABLE,
    Store,
    checked_path,
    columns,
    load_sweep,
    make_row,
    read_manifest,
    read_table,
    table_columns,
    write_table,
)

__all__ = ["CONNECT_TIMEOUT", "FORMAT", "FORMAT_VERSION", "KEYS", "MANIFEST", "MAX_GRID_POINTS", "MAX_RUNS",
           "NOT_GRID", "PLOT", "RESULT_DOC", "TABLE", "VECTOR_KEYS", "Cell", "Key", "Store", "SweepError",
           "SweepFailed", "SweepInUse", "SweepResult", "SweepSpec", "batched_engines", "build_spec",
           "canonical_key",
           "check_size", "checked_path", "columns", "default_chunk_size",
           "expand", "load_sweep", "make_row", "parse_grid_arg", "parse_seeds", "parse_value",
           "parse_values", "parse_vector", "read_config", "read_manifest", "read_table", "run_chunk",
           "run_id", "run_sweep", "table_columns", "write_table"]
