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

from ..io import CHECKPOINT, NO_LOCK, SUMMARY, TRAJECTORY, dangling_link
from . import InUse, UsageError

RUN_FILES = frozenset({TRAJECTORY, SUMMARY, CHECKPOINT})
"""What a run directory holds (plus hidden ``.NAME.*.tmp`` files of an atomic write)."""

EXIT_WRITE_FAILED = 1
"""Exit status when the results could not be written (the run itself was fine)."""


class OutputError(OSError):
    """The results could not be written or moved into place; the message says where they are."""


_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape_char(c: str) -> str:
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # a byte of invalid UTF-8, as os.fsdecode keeps it
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x20 or 0x7F <= o < 0xA0 or c in _BIDI or 0xD800 <= o < 0xE000:
        return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"
    return c


def shown(text) -> str:
    """``text`` (a path, or a message holding one) safe for a terminal: control and escape
    characters, bidirectional overrides and bytes of invalid UTF-8 appear as ``\\xNN`` /
    ``\\uNNNN``, never raw (they could rewrite the screen or reorder what the user reads)."""
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if text.isprintable() and text.isascii():
        return text
    return "".join(_escape_char(c) for c in text)


def default_run_dir(root: str, engine: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{engine}-seed{seed}"
    path, i = base, 1
    while path.exists() or staging_path(path).exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


NAME_MAX = 255
"""Longest file name (bytes) of the usual file systems."""


def staging_path(target: Path) -> Path:
    """``NAME.partial`` next to ``target``; for a name too long to take the suffix (a legal
    255-byte ``NAME``), its first bytes, a hash of the whole name and ``.partial``."""
    target = Path(target)
    name = target.name
    if len(os.fsencode(name + ".partial")) <= NAME_MAX:
        return target.with_name(name + ".partial")
    import hashlib

    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    head = name
    while len(os.fsencode(head)) > NAME_MAX - len(".partial") - len(digest) - 1:
        head = head[:-1]  # whole characters: a multi-byte one is never cut
    return target.with_name(head + "~" + digest + ".partial")


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
        for part in path.parts:  # checked now: the run would otherwise fail only when published
            if len(os.fsencode(part)) > NAME_MAX:
                raise UsageError(f"{flag} {text[:60]}{'...' if len(text) > 60 else ''}: a name of "
                                 f"{len(os.fsencode(part))} bytes; the limit is {NAME_MAX}")
        refuse_dangling(path, flag, text)
        if path.exists() and not path.is_dir():
            raise UsageError(f"{flag} {text} exists and is not a directory")
    except OSError as exc:  # e.g. a name too long, a directory we may not search
        raise UsageError(f"{flag} {text}: {_reason(exc)}") from None
    return path


def refuse_dangling(path, flag: str, text: str | None = None) -> None:
    """A one-line UsageError, before any work, for a path through a dangling link (writing
    there would fail only at the end, or create the link's target somewhere unexpected)."""
    why = dangling_link(path)
    if why is not None:
        raise UsageError(f"{flag} {text if text is not None else path}: {why}; fix or remove the "
                         f"link, or choose another {flag}")


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
        self.notes: list[str] = []
        if self.target.is_symlink():  # work on the run it points to, never swap the link for a folder
            real = self.target.resolve()
            if force and real.is_dir() and any(real.iterdir()):
                self.notes.append(f"{flag} {shown(self.shown)} is a symbolic link to {shown(real)}: "
                                  f"--force replaces the run there (the link stays)")
            self.target = real
        self.tmp = staging_path(self.target)
        self.lock = None
        typed = self.shown
        self._fresh = False
        try:
            if not resume:
                existing = self.target.is_dir() and any(self.target.iterdir())
                if existing and not force:
                    raise UsageError(f"{flag} {typed} already exists; choose another {flag} or pass --force")
                if existing:
                    foreign = foreign_entries(self.target)
                    if foreign:
                        listed = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
                        raise UsageError(f"{flag} {typed} holds files that are not a theory-sim run "
                                         f"({listed}); --force replaces only a run directory: "
                                         f"choose another {flag}")
            self._claim(force, resume, flag)
            probe = tempfile.NamedTemporaryFile(dir=self.tmp, prefix=".probe-")
            probe.close()
        except OSError as exc:
            self._undo()
            raise UsageError(f"{flag} {typed} is not writable ({_reason(exc)})") from None
        except UsageError:
            self._undo()
            raise

    def _undo(self) -> None:
        """A refused start leaves nothing behind: the staging directory it created goes."""
        if self._fresh and self.lock is not None:
            with contextlib.suppress(OSError):
                self.tmp.rmdir()
        self.release()

    def _claim(self, force: bool, resume: bool, flag: str) -> None:
        """Create ``NAME.partial`` and hold a lock on it for the whole run: a second process on
        the same ``--out`` is refused as in use (exit 75), never told to ``--force`` (which would
        delete the live run). An unlocked ``NAME.partial`` is an interrupted run."""
        from ..io import lock_dir

        self.target.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                self.tmp.mkdir()
                fresh = True
            except FileExistsError:
                fresh = False
            self.lock = lock_dir(self.tmp)
            if self.lock is None:
                raise InUse(f"{flag} {self.shown} is in use: another theory-sim process is writing "
                            f"{self.tmp.name}; wait for it to finish, or choose another {flag}")
            if self.lock != NO_LOCK and not _same_dir(self.lock, self.tmp):  # replaced by a --force
                self.release()
                continue
            # an empty one is a start that failed before writing anything: nothing to keep
            fresh = fresh or not any(self.tmp.iterdir())
            self._fresh = fresh
            if fresh or resume:
                return
            if not force:
                self.release()
                raise UsageError(f"{self.tmp} exists (an interrupted run?); continue it with "
                                 f"--resume {self.shown} or pass --force to start over")
            shutil.rmtree(self.tmp)  # an interrupted run, ours now (locked): start over
            self.release()
        raise InUse(f"{flag} {self.shown} is in use by another theory-sim process")

    def release(self) -> None:
        from ..io import unlock_dir

        unlock_dir(self.lock)
        self.lock = None

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
        self.release()
        return self.target

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.tmp)
        self.release()


def refuse_if_in_use(target: Path, flag: str, typed: str) -> None:
    """``InUse`` if another process holds ``target``'s staging directory (a live run)."""
    from ..io import lock_dir, unlock_dir

    tmp = staging_path(target)
    try:
        fd = lock_dir(tmp) if tmp.is_dir() else NO_LOCK
    except OSError:
        return  # unreadable: the checks that follow say so
    if fd is None:
        raise InUse(f"{flag} {typed} is in use: another theory-sim process is writing "
                    f"{tmp.name}; wait for it to finish, or choose another {flag}")
    unlock_dir(fd)


def _same_dir(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

