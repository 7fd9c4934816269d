"""Graceful stop on Ctrl-C (SIGINT) and SIGTERM for long commands.

The first signal only sets a flag that the work loop polls at its next step
boundary, so the command can write a consistent partial result; a second Ctrl-C
raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import signal
import threading


class GracefulStop:
    """Context manager; call the instance to ask whether a stop was requested."""

    def __init__(self):
        self.requested = None  # the signal's name once one arrived
        self._old = {}

    def __call__(self) -> bool:
        return self.requested is not None

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
