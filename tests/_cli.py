"""The `edgecnn` command run in the test process (no interpreter and torch start per call: ~4 s each).

Tests that need a process of their own (signals, import audits, torchrun, what `--help` imports)
still use subprocess. An exception that escapes the command, which a real process would print as a
traceback, is appended to stderr as one: "no traceback" assertions keep their meaning.
"""

from __future__ import annotations

import os
import subprocess
import traceback
from contextlib import contextmanager


@contextmanager
def _inside(cwd, env):
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    try:
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update(env or {})
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def run_cli(*args, cwd=None, env=None, **_) -> subprocess.CompletedProcess:
    """(returncode, stdout, stderr) of `edgecnn ARGS` run here, as subprocess.run would give them."""
    from typer.testing import CliRunner

    from edgecnn.cli import app

    args = [str(a) for a in args]
    with _inside(cwd, env):
        result = CliRunner().invoke(app, args)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(
            traceback.format_exception(result.exception)
        )
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)
