"""The settings numba reads from the environment, checked before numba is imported.

numba crashes on import with a traceback when ``NUMBA_NUM_THREADS`` is 0 or negative,
silently falls back to its default on ``abc``, and starts hundreds of threads on
``999``. ``theory_sim/__init__.py`` calls :func:`sanitize` first: a value numba cannot
use is removed from the environment (numba then takes its default), so importing
theory-sim never fails on it, and the problem is kept in :data:`PROBLEMS`; the command
line refuses it with one line (:func:`problems`), the library warns.

No import of numba (or of anything in theory_sim) here: this runs before them.
"""

from __future__ import annotations

import os

THREADING_LAYERS = ("default", "safe", "forksafe", "threadsafe", "tbb", "omp", "workqueue")
OPT_LEVELS = ("0", "1", "2", "3", "max")

PROBLEMS: dict[str, str] = {}
"""Variable name -> why its value was refused (filled by :func:`sanitize`)."""


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _int_at_least(text: str, low: int) -> bool:
    try:
        return int(text.strip()) >= low
    except ValueError:
        return False


def problems(environ=None) -> tuple[dict[str, str], dict[str, str]]:
    """``(errors, warnings)``: variable name -> one-line reason, for the numba settings in
    ``environ`` (default ``os.environ``) that numba cannot use (errors) or that will hurt
    (warnings: more threads than usable CPUs)."""
    env = os.environ if environ is None else environ
    errors, warnings = {}, {}
    value = env.get("NUMBA_NUM_THREADS")
    if value is not None:
        if not _int_at_least(value, 1):
            errors["NUMBA_NUM_THREADS"] = (f"NUMBA_NUM_THREADS={value!r} is not a whole number >= 1; "
                                           f"unset it or give e.g. NUMBA_NUM_THREADS={usable_cpus()}")
        elif int(value) > usable_cpus():
            warnings["NUMBA_NUM_THREADS"] = (f"NUMBA_NUM_THREADS={int(value)} is more than the "
                                             f"{usable_cpus()} usable CPUs: the parallel kernels "
                                             f"oversubscribe them and slow down")
    value = env.get("NUMBA_THREADING_LAYER")
    if value is not None and value.strip().lower() not in THREADING_LAYERS:
        errors["NUMBA_THREADING_LAYER"] = (f"NUMBA_THREADING_LAYER={value!r} is not one of "
                                           f"{', '.join(THREADING_LAYERS)}")
    value = env.get("NUMBA_OPT")
    if value is not None and value.strip().lower() not in OPT_LEVELS:
        errors["NUMBA_OPT"] = f"NUMBA_OPT={value!r} is not one of {', '.join(OPT_LEVELS)}"
    for name in ("NUMBA_DISABLE_JIT", "NUMBA_BOUNDSCHECK"):
        value = env.get(name)
        if value is not None and value.strip() not in ("0", "1", ""):
            errors[name] = f"{name}={value!r} is not 0 or 1"
    return errors, warnings


def sanitize() -> None:
    """Remove the settings numba cannot use from ``os.environ`` (before numba is imported),
    recording why in :data:`PROBLEMS`; the library warns once."""
    errors, _ = problems()
    if not errors:
        return
    import sys
    import warnings

    # the command line says it in its own one line (theory_sim.cli.main); a library user gets a warning
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    cli = argv0 in ("theory-sim", "-m") or sys.argv[0].endswith(os.path.join("cli", "__main__.py"))
    for name, why in errors.items():
        PROBLEMS[name] = why
        os.environ.pop(name, None)
        if not cli:
            warnings.warn(f"{why} (ignored: numba uses its default)", RuntimeWarning, stacklevel=3)
