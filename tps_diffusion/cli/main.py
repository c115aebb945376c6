"""Entry point of ``tps-diffusion``: parse, run the command in its run directory, report errors in one line."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Sequence

from . import commands
from .commands import say
from .config import run_config
from .parser import STAGES, UsageError, build_parser
from .rundir import MANIFEST, PROG, USER_ERRORS, Run, one_line
from .verify import compare_runs

COMMANDS = {"simulate": commands.cmd_simulate, "train": commands.cmd_train, "geodesic": commands.cmd_geodesic,
            "sample": commands.cmd_sample, "shoot": commands.cmd_shoot, "export": commands.cmd_export,
            "analyze": commands.cmd_analyze}


def verify(args) -> int:
    rows = compare_runs(args.run_a, args.run_b)
    if not args.quiet:
        for key, verdict in rows:
            print(f"{verdict:>10}  {key}")
    differ = [key for key, verdict in rows if verdict != "same"]
    if differ:
        print(f"{PROG}: {args.run_a} and {args.run_b} differ in {', '.join(differ)}", file=sys.stderr)
    return 1 if differ else 0


@contextlib.contextmanager
def silenced_stdout(quiet: bool):
    """With ``--quiet``, send file descriptor 1 to /dev/null: the C trajectory plugins of mdtraj print
    there directly ("dcdplugin) ..."), bypassing Python. Errors go to stderr and stay visible."""
    if not quiet:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def execute(args, argv: Sequence[str]) -> dict | None:
    """Run one parsed command; returns its manifest (None for bench)."""
    if args.command == "bench":
        return commands.cmd_bench(args, argv)
    if getattr(args, "resume", False) and args.run_dir is None:
        raise UsageError(f"--resume needs --run-dir DIR (the run directory to continue) (see '{PROG} "
                         f"{args.command} --help')")
    with Run(args.command, args, argv) as run:
        if args.command == "run":
            run_config(args, run, execute)
        else:
            COMMANDS[args.command](args, run)
        manifest = run.publish()
    say(args, f"{args.command}: manifest {run.dir / MANIFEST}")
    return manifest


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: "
          f"{one_line(message) if isinstance(message, BaseException) else str(message).splitlines()[0]}",
          file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tps-diffusion``; returns the exit code (0 ok, 1 error, 2 usage error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        msg = str(exc)
        cmd = next((a for a in argv if not a.startswith("-")), None)
        if cmd in (*STAGES, "run", "bench", "verify"):  # unrecognized arguments are reported by the top-level parser
            msg = msg.replace(f"(see '{PROG} --help')", f"(see '{PROG} {cmd} --help')")
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    with warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = _show_warning
        try:
            if args.command == "verify":
                return verify(args)
            with silenced_stdout(args.quiet):
                execute(args, argv)
        except KeyboardInterrupt as exc:
            if debug:
                raise
            print(f"{PROG}: {exc.args[0] if exc.args else 'interrupted'}", file=sys.stderr)
            return 130
        except UsageError as exc:
            if debug:
                raise
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        except USER_ERRORS as exc:
            if debug:
                raise
            print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
            return 1
    return 0
