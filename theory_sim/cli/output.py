"""Output directories that are never left half-written and never overwritten by accident.

A run is assembled in the staging directory ``NAME.partial`` next to its target
``NAME`` (checkpoints go there too, so a killed run can be resumed) and renamed into
place at the end. Every file inside is itself written atomically (theory_sim.io).
An existing ``NAME`` is replaced only with ``--force`` (or when resuming it), and
only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from . import UsageError


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


class StagedDir:
    """A directory built under ``NAME.partial`` and published atomically as ``NAME``."""

    def __init__(self, target, *, force: bool = False, resume: bool = False):
        self.target = Path(target)
        self.tmp = staging_path(self.target)
        if self.target.exists() and not self.target.is_dir():
            raise UsageError(f"--out {self.target} exists and is not a directory")
        if not resume:
            if self.target.exists() and any(self.target.iterdir()) and not force:
                raise UsageError(f"--out {self.target} already exists; choose another --out or pass --force")
            if self.tmp.exists():
                if not force:
                    raise UsageError(f"{self.tmp} exists (an interrupted run?); continue it with "
                                     f"--resume {self.target} or pass --force to start over")
                shutil.rmtree(self.tmp)
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.tmp, prefix=".probe-")
            probe.close()
        except OSError as exc:
            raise UsageError(f"--out {self.target} is not writable ({exc.strerror or exc})") from None

    @property
    def path(self) -> Path:
        """Where to write the files now."""
        return self.tmp

    def publish(self) -> Path:
        """Move the finished directory into place (replacing an old one)."""
        old = None
        if self.target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
            os.replace(self.target, old / "run")
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.tmp)
