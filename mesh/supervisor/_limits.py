"""Process limits the supervised children inherit."""

from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; children inherit it.

    Every idle SSE stream or WebSocket holds a descriptor in the gateway and two in Envoy (client
    side and upstream side); the usual soft limit of 1024 would cap a front door at a few hundred
    streams. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        # An unlimited hard limit cannot be the soft one; nr_open (usually 2^20) is what the kernel allows.
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
