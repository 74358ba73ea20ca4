"""Ends a federation whose ``harmony`` died without ending it (SIGKILL, the out-of-memory killer).

``harmony run`` starts this watcher beside the federation's process group and keeps the write end of a pipe
whose read end only the watcher holds. The kernel closes that pipe when ``harmony`` exits in any way. When
``harmony`` ends the federation itself, it writes ``done`` first and the watcher leaves the (already empty)
group alone; end of file without ``done`` means ``harmony`` is gone, and the watcher kills the whole group.

Run as ``python -m runner.reaper FD PGID``; standard library only, so it starts in a few milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys

DONE = b"done"


def watch(fd: int, pgid: int) -> bool:
    """Block until the pipe ``fd`` closes; kill process group ``pgid`` unless ``done`` came first.
    Returns whether it killed."""
    said = b""
    while chunk := os.read(fd, 64):
        said += chunk
    if said.endswith(DONE):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def main() -> None:
    fd, pgid = int(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for harmony is handled by harmony
    watch(fd, pgid)


if __name__ == "__main__":
    main()
