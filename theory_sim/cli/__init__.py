"""Command line: the only layer that parses arguments, prints, and reads or writes files.

``theory-sim run``  one simulation, summary on stdout, progress on stderr.
Errors in what the user typed end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..params import ParamError
from . import signals

EXIT_USAGE = 2
EXIT_FAILED = 3


COMMAND_MODULES = ("run", "figures", "sweep", "doctor")
"""The modules of ``theory_sim.cli`` that each add subcommands (``add_parser``), in help order."""


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class BrokenCommand(RuntimeError):
    """A subcommand's module failed to import: the installation is broken (exit status 3).

    Every command fails with this rather than the broken one vanishing from ``--help``.
    """


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _command_module(name: str):
    module = f"{__name__}.{name}"
    try:
        return importlib.import_module(module)
    except Exception as exc:
        raise BrokenCommand(f"the module {module} (the '{name}' command) failed to import: "
                            f"{type(exc).__name__}: {exc}; the installation is broken "
                            f"(reinstall theory-sim)") from exc


DESCRIPTION = ("Simulate the training dynamics of the two-layer model of Wen & Li (NeurIPS 2022), "
               "'The Mechanism of Prediction Head in Non-contrastive Self-supervised Learning': "
               "one run, a sweep of runs, or the figures that check the paper's statements "
               "(docs/model.md, docs/paper.md).")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="theory-sim", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"theory-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        _command_module(name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except (UsageError, ParamError) as exc:
        print(f"theory-sim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenCommand as exc:
        print(f"theory-sim: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        print("theory-sim: interrupted", file=sys.stderr)
        return signals.interrupt_status(exc)
    except BrokenPipeError:  # e.g. `theory-sim run | head`: the reader left, not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
