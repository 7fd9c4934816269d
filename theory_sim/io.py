"""Reading and writing runs: the one module that touches files (used by the CLI).

A run directory holds ``trajectory.npz`` (every array of a :class:`Run` plus its
configuration as JSON) and ``summary.json``. Every file is written atomically:
to a temporary file in the same directory, flushed, fsynced, then renamed, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .events import EVENT_ARRAYS
from .results import STATUSES, Run

FORMAT = "theory-sim-run"
FORMAT_VERSION = 1
TRAJECTORY = "trajectory.npz"
SUMMARY = "summary.json"
_ARRAYS = ("steps", "alignment", "norms", "E", "loss", "rho", "gram", "W0", "W", "E_final", "time",
           "W_target")
"""The arrays of a run file; the first seven are required, ``time`` only for the flow engine,
``W_target`` only for an EMA target."""


class RunFileError(ValueError):
    """A file is not a readable theory-sim run."""


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb"):
    """Open a temporary sibling of ``path``; on success fsync and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dangling_link(path) -> str | None:
    """Why ``path`` (absolute or not) runs through a dangling symbolic link (``None`` if it does not)."""
    path = Path(os.path.abspath(os.fspath(path)))
    for link in (*reversed(path.parents), path):
        try:
            if link.is_symlink() and not link.exists():
                return f"{link} is a symbolic link to {os.readlink(link)}, which does not exist"
        except OSError:
            return None
    return None


NO_LOCK = -1
"""What :func:`lock_dir` returns where the file system has no locks (some network file systems):
the work goes on unlocked rather than not at all."""


def lock_dir(path) -> int | None:
    """A descriptor holding an exclusive ``flock`` on the directory ``path``, or ``None`` when
    another process (or another descriptor of this one) holds it, or :data:`NO_LOCK` where
    locks are not supported. The lock is released when the descriptor is closed or the
    process ends (a killed run leaves no stale lock)."""
    import errno

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return NO_LOCK
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
            return NO_LOCK
        raise
    return fd


def unlock_dir(fd: int | None) -> None:
    if fd is not None and fd != NO_LOCK:
        with contextlib.suppress(OSError):
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=_json_default)
        fh.write("\n")


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def save_run(run: Run, directory, *, summary: dict | None = None) -> Path:
    """Write ``run`` to ``directory`` (created if needed); return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": run.config,
            "status": run.status, "message": run.message, "elapsed": run.elapsed}
    if run.stats is not None:
        meta["stats"] = run.stats
    arrays = {name: getattr(run, name) for name in _ARRAYS if getattr(run, name) is not None}
    if run.events is not None:
        arrays.update({f"event_{k}": run.events[k] for k in EVENT_ARRAYS})
        meta["events"] = {k: run.events[k] for k in ("last", "align_threshold", "head_tol", "unit")
                          if k in run.events}
    with atomic_write(directory / TRAJECTORY) as fh:
        np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)
    if summary is not None:
        write_json(directory / SUMMARY, summary)
    return directory


def _read_npz(path, default_name: str, what: str) -> tuple[Path, dict]:
    """Every array of an ``.npz`` (``path`` or ``path/default_name``), or one-line ``RunFileError``."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.exists():
        raise RunFileError(f"{path}: no such {what} file")
    if not path.is_file():  # a FIFO or a device: reading it could block forever
        raise RunFileError(f"{path}: not a regular file, so not a {what}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return path, {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError) as exc:
        raise RunFileError(f"{path}: not a readable {what} ({exc.__class__.__name__}: {exc})") from None


def load_run(path) -> Run:
    """Read a run written by :func:`save_run` (a run directory or its ``trajectory.npz``).

    Raises :class:`RunFileError` with one line saying what is wrong for a missing,
    truncated, foreign or newer-format file.
    """
    path, data = _read_npz(path, TRAJECTORY, "theory-sim run")
    if "meta" not in data:
        raise RunFileError(f"{path}: not a theory-sim run (no metadata)")
    try:
        meta = json.loads(str(data.pop("meta")))
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: corrupt metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunFileError(f"{path}: not a theory-sim run file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise RunFileError(f"{path}: run format version {version!r}, this theory-sim reads "
                           f"version {FORMAT_VERSION}; re-run the simulation with this version")
    missing = [k for k in _ARRAYS[:7] if k not in data]
    if missing or meta.get("status") not in STATUSES:
        raise RunFileError(f"{path}: incomplete run file (missing {', '.join(missing) or 'status'})")
    T = data["steps"].shape[0]
    if any(data[k].shape[:1] != (T,) for k in _ARRAYS[:7]):
        raise RunFileError(f"{path}: inconsistent array lengths")
    events = None
    if isinstance(meta.get("events"), dict) and all(f"event_{k}" in data for k in EVENT_ARRAYS):
        events = {k: data[f"event_{k}"] for k in EVENT_ARRAYS} | meta["events"]
    return Run(**{k: data.get(k) for k in _ARRAYS}, config=meta["config"], status=meta["status"],
               message=meta.get("message", ""), elapsed=meta.get("elapsed", float("nan")), events=events,
               stats=meta.get("stats"))


CHECKPOINT = "checkpoint.npz"


def save_checkpoint(state: dict, path) -> Path:
    """Write a :meth:`Simulation.checkpoint` state atomically to ``path``."""
    path = Path(path)
    arrays = {k: v for k, v in state.items() if k != "meta"}
    with atomic_write(path) as fh:
        np.savez(fh, meta=np.array(json.dumps(state["meta"], default=_json_default)), **arrays)
    return path


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; ``RunFileError`` if unreadable."""
    path, state = _read_npz(path, CHECKPOINT, "checkpoint")
    try:
        state["meta"] = json.loads(str(state["meta"]))
    except (KeyError, json.JSONDecodeError) as exc:
        raise RunFileError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from None
    return state
