"""A dependency-free progress bar on stderr."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """``bar(done, total, text)``: redraws in place on a terminal, prints a few lines otherwise."""

    def __init__(self, label: str, *, stream=None, enabled: bool = True, width: int = 28):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._last_decile = -1

    def __call__(self, done: int, total: int, text: str = "", final: bool = False):
        if not self.enabled:
            return
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        fill = int(round(frac * self.width))
        bar = "#" * fill + "." * (self.width - fill)
        line = f"{self.label} [{bar}] {100 * frac:5.1f}% {time.perf_counter() - self.t0:6.1f}s {text}"
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(80))
            if final:
                self.stream.write("\n")
        else:
            decile = int(frac * 10)
            if decile > self._last_decile or final:
                self._last_decile = decile
                self.stream.write(line + "\n")
        self.stream.flush()
