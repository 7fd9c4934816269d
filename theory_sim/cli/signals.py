"""Graceful stop on Ctrl-C (SIGINT) and SIGTERM for long commands, and their exit statuses.

The first signal only sets a flag that the work loop polls at its next step
boundary, so the command can write a consistent partial result; a second Ctrl-C
raises KeyboardInterrupt at once.

Exit statuses follow the shell convention ``128 + signal number``: 130 after
Ctrl-C (SIGINT), 143 after SIGTERM. Every command reports an interruption through
:func:`exit_status` (or :attr:`GracefulStop.exit_status`), so ``run``, ``figures``
and ``sweep`` agree.
"""

from __future__ import annotations

import contextlib
import signal
import threading

EXIT_SIGINT = 128 + signal.SIGINT    # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


def exit_status(signal_name: str | None) -> int:
    """``128 + n`` for the signal called ``signal_name`` (``None``, i.e. a plain
    KeyboardInterrupt, counts as SIGINT)."""
    if not signal_name:
        return EXIT_SIGINT
    try:
        return 128 + int(signal.Signals[signal_name])
    except KeyError:
        return EXIT_SIGINT


class Terminated(KeyboardInterrupt):
    """KeyboardInterrupt raised by :func:`term_as_interrupt` on SIGTERM (``signal_name`` says which)."""

    signal_name = "SIGTERM"


def interrupt_status(exc: BaseException) -> int:
    """The exit status for a caught KeyboardInterrupt: 143 if SIGTERM caused it, else 130."""
    return exit_status(getattr(exc, "signal_name", None))


class _Received:
    """What :func:`term_as_interrupt` yields: the signal that arrived (if any) and its exit status."""

    def __init__(self):
        self.requested = None

    @property
    def exit_status(self) -> int:
        return exit_status(self.requested)


@contextlib.contextmanager
def term_as_interrupt():
    """Within the block SIGTERM raises :class:`Terminated` (a KeyboardInterrupt), so code
    that already cleans up on Ctrl-C does the same on SIGTERM. Catch KeyboardInterrupt
    outside the block and return ``received.exit_status`` (143 after SIGTERM, else 130)
    of the object it yields; it stays right even when the exception was re-raised as
    another KeyboardInterrupt on the way out."""
    received = _Received()

    def handler(signum, frame):
        received.requested = signal.Signals(signum).name
        raise Terminated

    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, handler) if main_thread else None
    try:
        yield received
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old)


class GracefulStop:
    """Context manager; call the instance to ask whether a stop was requested."""

    def __init__(self):
        self.requested = None  # the signal's name once one arrived
        self._old = {}

    def __call__(self) -> bool:
        return self.requested is not None

    @property
    def exit_status(self) -> int:
        """130 after SIGINT (or no signal: a KeyboardInterrupt), 143 after SIGTERM."""
        return exit_status(self.requested)

    def _handler(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        return False
