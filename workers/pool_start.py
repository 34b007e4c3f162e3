"""Starting the local executor's pool process (``workers.pool``), possibly before it is needed.

A pool starts as ``python -m workers.pool --await-open HOME`` and waits for its first message,
``{"v": 1, "op": "open", "args": [...]}``, which names its run, attempt and journal (known only once
the attempt exists). So a command can start it first and import and plan meanwhile: the pool's own
interpreter and imports (≈ 0.12 s, a sixth of a one-job ``executioner run``) run on another core
instead of in series. A pool never told to open exits at the end of its input, having written
nothing. This module is light on purpose (``subprocess`` only): the command imports it before
everything else.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

AWAIT_OPEN = "--await-open"
DISCARD_SECONDS = 5.0


def start_pool(home: str) -> subprocess.Popen:
    """A pool process waiting to be opened. ``home`` is only shown (``ps``: whose pool it is)."""
    return subprocess.Popen(
        [sys.executable, "-m", "workers.pool", AWAIT_OPEN, home],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # it logs to its journal folder: it may outlive our stderr
        start_new_session=True,  # Ctrl-C reaches the coordinator, which cancels through the pipe
        close_fds=True,
    )


def discard(proc: subprocess.Popen) -> None:
    """A pool that was never opened: the end of its input stops it (it ran and wrote nothing)."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(DISCARD_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(OSError):
        proc.stdout.close()
