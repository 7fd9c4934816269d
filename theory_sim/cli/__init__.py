"""Command line: the only layer that parses arguments, prints, and reads or writes files.

``theory-sim run``  one simulation, summary on stdout, progress on stderr.
Every failure ends with one ``theory-sim: error:`` line on stderr and the exit status
of :data:`EXIT_STATUSES` (listed by ``theory-sim --help``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from .. import __version__
from ..params import ParamError
from . import signals

EXIT_WRITE_FAILED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_IN_USE = 75  # sysexits' EX_TEMPFAIL: try again once the other process has finished

EXIT_STATUSES = (
    (0, "success"),
    (EXIT_WRITE_FAILED, "the output could not be written (standard output closed or failing, disk "
                        "full); results already written are kept"),
    (EXIT_USAGE, "bad input: an option, a path, a damaged checkpoint, sweep table or manifest, "
                 "an invalid NUMBA_* setting (nothing is changed)"),
    (EXIT_FAILED, "the run diverged, a sweep task failed, or the installation is broken"),
    (EXIT_IN_USE, "the --out directory is in use by another theory-sim process"),
    (130, "interrupted by Ctrl-C (SIGINT), a partial result written"),
    (143, "interrupted by SIGTERM, a partial result written"),
)


COMMAND_MODULES = ("run", "figures", "sweep", "doctor")
"""The modules of ``theory_sim.cli`` that each add subcommands (``add_parser``), in help order."""


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class InUse(UsageError):
    """The output is being written by another theory-sim process: exit status 75."""


class BrokenCommand(RuntimeError):
    """A subcommand's module failed to import: the installation is broken (exit status 3).

    Every command fails with this rather than the broken one vanishing from ``--help``.
    """


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _print_message(self, message, file=None):
        # argparse swallows a failed write: --help > /dev/full would exit 0 with nothing written
        if not message:
            return
        if file is None and sys.stdout is None:
            raise WriteFailed("standard output is closed; nothing was printed")
        file = file or sys.stderr
        file.write(message)
        file.flush()


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


def _epilog() -> str:
    import textwrap

    rows = [textwrap.fill(what, 79, initial_indent=f"  {code:>3}  ", subsequent_indent=" " * 7)
            for code, what in EXIT_STATUSES]
    return "exit status:\n" + "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    import textwrap

    parser = _Parser(prog="theory-sim", description=textwrap.fill(DESCRIPTION, 79), epilog=_epilog(),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"theory-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        _command_module(name).add_parser(sub)
    return parser


def _numba_environment(args) -> None:
    """An invalid NUMBA_* setting is refused by every command (doctor reports it first)."""
    from .. import _numba_env

    errors, warnings = _numba_env.problems()
    errors = {**_numba_env.PROBLEMS, **errors}  # removed at import, or set since (in process)
    for why in warnings.values():
        warn(why)
    if errors:
        if getattr(args, "func", None) is not None and getattr(args, "command", None) == "doctor":
            with contextlib.suppress(OSError):  # the setting is the error to report, not stdout
                args.func(args)  # the report is what a bug report needs: print it anyway
        raise UsageError("; ".join(errors.values()))


def warn(text: str) -> None:
    """One ``theory-sim: warning:`` line on stderr (nothing if stderr cannot be written)."""
    from .output import shown

    try:
        print(f"theory-sim: warning: {shown(text)}", file=sys.stderr)
    except (OSError, ValueError, AttributeError):
        pass


def _check_stdout() -> None:
    """A closed standard output (``>&-``) would lose the summary silently: refuse before starting."""
    if sys.stdout is None or getattr(sys.stdout, "closed", False):
        raise WriteFailed("standard output is closed; nothing was run (redirect it, e.g. > /dev/null)")


class WriteFailed(OSError):
    """Output could not be written: one line, exit status 1."""


def _flush_stdout() -> None:
    if sys.stdout is not None and not getattr(sys.stdout, "closed", False):
        sys.stdout.flush()


def main(argv=None) -> int:
    try:
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
        except SystemExit:  # --help, --version: their text must reach stdout too
            _flush_stdout()
            raise
        _numba_environment(args)
        _check_stdout()
        code = int(args.func(args) or 0)
        _flush_stdout()
        return code
    except InUse as exc:
        _error(str(exc))
        return EXIT_IN_USE
    except (UsageError, ParamError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except BrokenCommand as exc:
        _error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        print("theory-sim: interrupted", file=sys.stderr)
        return signals.interrupt_status(exc)
    except BrokenPipeError:  # e.g. `theory-sim run | head`: the reader left, not an error of ours
        import os

        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # stdout on a full disk or /dev/full, a failing file system
        _silence_stdout()
        if isinstance(exc, WriteFailed):
            what = str(exc)
        elif getattr(exc, "filename", None):  # a file of ours, read or written
            what = f"{exc.filename}: {exc.strerror or exc}; results already written are kept"
        else:
            what = f"cannot write the output ({exc.strerror or exc}); results already written are kept"
        _error(what)
        return EXIT_WRITE_FAILED


def _silence_stdout() -> None:
    """Drop what is still buffered for a failing stdout, so that exit does not fail again."""
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _error(text: str) -> None:
    """The one ``theory-sim: error:`` line, escaped for the terminal (dropped if stderr fails)."""
    from .output import shown

    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(f"theory-sim: error: {shown(text)}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
