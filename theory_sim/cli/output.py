"""Output directories that are never left half-written and never overwritten by accident.

Results are assembled in a hidden sibling directory and renamed into place at the
end; ``--force`` swaps an existing directory out only once the new one is complete.
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
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


class StagedDir:
    """A directory built under a temporary name and published atomically."""

    def __init__(self, target: Path, *, force: bool):
        self.target = Path(target)
        if self.target.exists() and not self.target.is_dir():
            raise UsageError(f"--out {self.target} exists and is not a directory")
        if self.target.exists() and any(self.target.iterdir()) and not force:
            raise UsageError(f"--out {self.target} already exists; choose another --out or pass --force")
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-",
                                             dir=self.target.parent))
        except OSError as exc:
            raise UsageError(f"--out {self.target} is not writable ({exc.strerror or exc})") from None

    @property
    def path(self) -> Path:
        """Where to write the files now."""
        return self.tmp

    def publish(self) -> Path:
        """Move the finished directory into place (replacing an old one if --force)."""
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
