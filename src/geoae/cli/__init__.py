"""The ``geoae`` command line: data, theory, train, reproduce, report, export, explore, bench, info,
convert-keras.

Each sub-command is a thin layer over the library, in two steps. ``check_<command>`` validates everything
first: every option, the ``GEOAE_*`` settings, the files named (inputs readable and well-formed, outputs
writable); bad input is one line naming the option as written (or the config key, or the variable), the
value and what is allowed. Only then does ``run_<command>`` work, calling the functions a Python user would.

Exit codes:

- 0: done;
- 1: a failure while working (a full disk, another process training in the run directory, a diverged run,
  a failed experiment), one line; or an internal error (a bug in geoae: a hint says how to report it, and
  ``GEOAE_DEBUG=1`` shows the traceback);
- 2: bad input, refused before anything was written (also a corrupted or foreign checkpoint or model);
- 130: interrupted (Ctrl-C): the finished work is kept and the same command resumes it;
- 141: standard output was closed by its reader (``geoae info --json | head -1``): no message, the code of a
  process ended by SIGPIPE, as ``cat`` or ``yes`` give in a shell pipeline.

The package: ``parser.py`` builds the parsers, ``checks.py`` holds the ``check_*`` functions, ``commands.py``
the ``run_*`` functions and ``COMMANDS``; this module runs one command (``main``).
"""

from __future__ import annotations

import contextlib
import os
import sys

from .. import __version__, interrupts
from .checks import UsageError
from .commands import COMMANDS
from .parser import _subparsers as _subparsers  # tests walk every parser
from .parser import get_parser

__all__ = ["COMMANDS", "EXIT_PIPE", "UsageError", "get_parser", "main"]

EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader has gone


@contextlib.contextmanager
def _quiet(enabled: bool):
    """``--quiet``: standard output goes nowhere (errors still reach standard error)."""
    if not enabled:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _say(prog: str, err: BaseException) -> None:
    """One line on standard error: ``geoae CMD: error: …`` (an OSError as its file and reason); a standard error
    that cannot be written (a full disk, /dev/full) does not change the exit code."""
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    else:
        text = str(err)
    with contextlib.suppress(OSError, ValueError):
        print(f"{prog}: error: {' '.join(text.split())}", file=sys.stderr, flush=True)


def _internal(prog: str, err: BaseException) -> int:
    """A bug: said as such (never as bad input), with where to report it; the traceback under GEOAE_DEBUG=1."""
    import traceback

    from ..settings import SettingsError, debug_enabled

    print(f"{prog}: internal error: {type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
    try:
        debug = debug_enabled()
    except SettingsError:
        debug = False
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    else:
        print(f"{prog}: this is a bug in geoae {__version__}, not in your input: please report it to the geoae "
              "developers (issue tracker) with the command and its output under GEOAE_DEBUG=1 (the traceback)",
              file=sys.stderr)
    return 1


def _run(args) -> int:
    """Check (bad input: exit 2, nothing written), then work (a fault: exit 1; a bug: internal error)."""
    from ..settings import SettingsError, read_settings
    from ..training import CheckpointError, RunLockedError, TrainingDiverged

    prog = f"geoae {args.command}"
    check, work = COMMANDS[args.command]
    try:
        if args.command != "info":  # info shows a bad setting instead of refusing
            read_settings()
        plan = check(args)
    except BrokenPipeError:
        raise  # the reader of our output has gone: main ends quietly
    except (ValueError, OSError, ImportError) as err:  # UsageError, SettingsError, CheckpointError, missing h5py
        _say(prog, err)
        return 2
    except Exception as err:  # noqa: BLE001 - a bug, reported as one (KeyboardInterrupt passes)
        return _internal(prog, err)
    try:
        return work(args, plan)
    except BrokenPipeError:
        raise
    except (UsageError, SettingsError, CheckpointError) as err:
        _say(prog, err)
        return 2
    except (OSError, RunLockedError, TrainingDiverged) as err:  # a full disk, another process, a diverged run
        _say(prog, err)
        return 1
    except Exception as err:  # noqa: BLE001 - a bug, reported as one (KeyboardInterrupt passes)
        return _internal(prog, err)


def _output_gone() -> int:
    """Standard output's reader has gone (``geoae info --json | head -1``): no message, the exit code of a
    process ended by SIGPIPE (141), and standard output pointed at /dev/null so that the interpreter's final
    flush does not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor (a replaced sys.stdout)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - kept open until the process ends
    return EXIT_PIPE


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (module docstring). Ctrl-C anywhere, even one swallowed by a
    finaliser on the way (``interrupts``), ends it with 130, the finished work kept; a closed output pipe ends
    it quietly with 141."""
    try:
        try:
            return _main(argv)
        finally:  # also after --help: a closed pipe shows here, not in the interpreter's last flush
            sys.stdout.flush()
    except BrokenPipeError:
        return _output_gone()


def _main(argv: list[str] | None) -> int:
    prog = "geoae"
    try:
        with interrupts.sigint_handler():
            try:
                args = get_parser().parse_args(argv)
            except UsageError as err:  # argparse's own errors (unknown option, bad choice): one line, exit code 2
                print(err, file=sys.stderr)
                return 2
            prog = f"geoae {args.command}"
            with _quiet(args.quiet):
                code = _run(args)
            interrupts.check()
            return code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the finished work is kept: run the same command again to resume",
              file=sys.stderr)
        return 130
