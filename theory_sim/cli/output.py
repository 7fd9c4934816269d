"""Output directories that are never left half-written and never overwritten by accident.

A run is assembled in the staging directory ``NAME.partial`` next to its target
``NAME`` (checkpoints go there too, so a killed run can be resumed) and renamed into
place at the end. Every file inside is itself written atomically (theory_sim.io).
An existing ``NAME`` is replaced only with ``--force`` (or when resuming it), only
when it holds nothing but a theory-sim run, and only once the new one is complete.

Every problem with the path a user typed (empty, ``.``, ``..``, ``/``, a path through
a file, a name too long, a directory we may not write) is a one-line
:class:`~theory_sim.cli.UsageError` raised before the simulation starts; a failure
while publishing (disk full, permissions changed mid-run) is an :class:`OutputError`
that leaves the previous result in place and says where the new one is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..io import CHECKPOINT, SUMMARY, TRAJECTORY
from . import UsageError

RUN_FILES = frozenset({TRAJECTORY, SUMMARY, CHECKPOINT})
"""What a run directory holds (plus hidden ``.NAME.*.tmp`` files of an atomic write)."""

EXIT_WRITE_FAILED = 1
"""Exit status when the results could not be written (the run itself was fine)."""


class OutputError(OSError):
    """The results could not be written or moved into place; the message says where they are."""


def default_run_dir(root: str, engine: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{engine}-seed{seed}"
    path, i = base, 1
    while path.exists() or staging_path(path).exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def staging_path(target: Path) -> Path:
    target = Path(target)
    return target.with_name(target.name + ".partial")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def checked_target(raw, flag: str = "--out") -> Path:
    """The absolute, normalised directory ``raw`` names, or a one-line ``UsageError``.

    Refused: an empty name, a NUL byte, the current directory or any directory that
    contains it (``.``, ``..``, ``/``: replacing it would pull the ground from under
    the shell), and a path that runs through an existing file.
    """
    text = os.fspath(raw) if isinstance(raw, os.PathLike) else str(raw)
    if not text.strip():
        raise UsageError(f"{flag} needs a directory name (got an empty string), e.g. {flag} runs/first")
    if "\x00" in text:
        raise UsageError(f"{flag} must not contain a NUL character (got {text!r})")
    try:
        path = Path(os.path.abspath(text))
        cwd = Path.cwd().resolve()
        real = path.resolve()
        if real == cwd or real in cwd.parents or path.name in ("", ".", ".."):
            raise UsageError(f"{flag} {text} is the current directory or contains it; "
                             f"name a new directory, e.g. {flag} runs/first")
        for parent in path.parents:  # a path through a file: name the file
            if parent.exists() and not parent.is_dir():
                raise UsageError(f"{flag} {text} is not writable: {parent} is a file, not a directory")
        if path.exists() and not path.is_dir():
            raise UsageError(f"{flag} {text} exists and is not a directory")
    except OSError as exc:  # e.g. a name too long, a directory we may not search
        raise UsageError(f"{flag} {text}: {_reason(exc)}") from None
    return path


def foreign_entries(directory: Path) -> list[str]:
    """Names in ``directory`` that are not part of a theory-sim run (sorted)."""
    names = []
    for p in directory.iterdir():
        if p.name in RUN_FILES or (p.name.startswith(".") and p.name.endswith(".tmp")):
            continue
        names.append(p.name)
    return sorted(names)


class StagedDir:
    """A directory built under ``NAME.partial`` and published atomically as ``NAME``.

    ``target`` is what the user typed (used in messages); the work happens on its
    absolute, normalised form.
    """

    def __init__(self, target, *, force: bool = False, resume: bool = False, flag: str = "--out"):
        self.shown = os.fspath(target) if isinstance(target, os.PathLike) else str(target)
        self.target = checked_target(target, flag)
        self.tmp = staging_path(self.target)
        shown = self.shown
        try:
            if not resume:
                existing = self.target.is_dir() and any(self.target.iterdir())
                if existing and not force:
                    raise UsageError(f"{flag} {shown} already exists; choose another {flag} or pass --force")
                if existing:
                    foreign = foreign_entries(self.target)
                    if foreign:
                        listed = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
                        raise UsageError(f"{flag} {shown} holds files that are not a theory-sim run "
                                         f"({listed}); --force replaces only a run directory: "
                                         f"choose another {flag}")
                if self.tmp.exists():
                    if not force:
                        raise UsageError(f"{self.tmp} exists (an interrupted run?); continue it with "
                                         f"--resume {shown} or pass --force to start over")
                    shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.tmp, prefix=".probe-")
            probe.close()
        except OSError as exc:
            raise UsageError(f"{flag} {shown} is not writable ({_reason(exc)})") from None

    @property
    def path(self) -> Path:
        """Where to write the files now."""
        return self.tmp

    def publish(self) -> Path:
        """Move the finished directory into place (replacing an old one).

        If that fails, the old result is put back and :class:`OutputError` says
        where the new one is (still complete, in ``NAME.partial``).
        """
        old = None
        try:
            if self.target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
                os.replace(self.target, old / "run")
            os.replace(self.tmp, self.target)
        except OSError as exc:
            if old is not None and (old / "run").exists() and not self.target.exists():
                with contextlib.suppress(OSError):
                    os.replace(old / "run", self.target)
            if old is not None:
                with contextlib.suppress(OSError):
                    old.rmdir()
            raise OutputError(f"could not move the results into {self.shown} ({_reason(exc)}); "
                              f"they are complete in {self.tmp}") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.tmp)
