"""Command line: the only layer that parses arguments, prints, and reads or writes files.

``theory-sim run``  one simulation, summary on stdout, progress on stderr.
Errors in what the user typed end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..params import ParamError

EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    from . import run as run_cmd

    parser = _Parser(prog="theory-sim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"theory-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    run_cmd.add_parser(sub)
    for name in ("figures", "sweep", "doctor"):
        try:
            mod = __import__(f"{__name__}.{name}", fromlist=["add_parser"])
        except ImportError:
            continue
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except (UsageError, ParamError) as exc:
        print(f"theory-sim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("theory-sim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `theory-sim run | head`: the reader left, not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
