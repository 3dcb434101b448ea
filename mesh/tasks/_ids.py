"""Task ids: one namespace for the whole mesh, every id safe as a NATS subject token.

The id a task has in the mesh (in subjects, events, work items, the listing, dead letters,
ordering-key state, idempotency records) is one of:

- **mesh-assigned** (`new_task_id`): 26 characters of lower-case Crockford base32, time-sortable,
  globally unique by construction;
- **scoped** (`scoped_task_id`), for an id a client chose: the chosen id is a name in its
  tenant's own namespace, and the task's mesh id is derived from (tenant, chosen id) as
  ``<chosen id, first 37 characters>_<24 base32 characters of sha256(tenant, chosen id)>``.
  Two tenants that choose the same name get two tasks that never meet;
- ``<mesh id>-r``: the replay of a dead-lettered task (the gateway's ReplayDeadLetter).

Why a scoped id looks like this: the digest covers the tenant and the whole chosen id (120 bits
kept), so two (tenant, name) pairs share an id only through a sha256 collision, and truncating
the readable prefix loses nothing; it contains ``_`` where a mesh-assigned id cannot, and it ends
in base32 where a replay id ends in ``-r``, so it never equals an id of the other kinds; it is at
most 62 characters, so a replay's ``-r`` still fits the 64-character token; the name the client
chose leads it, so people can read it.

The gateway maps names to ids (`services.gateway._guard`): submit returns the task's mesh id,
which addresses the task on every surface and for every caller, admins included. A tenant may
also address its task by the name it chose: an id a tenant's caller gives names that tenant's own
task with that mesh id if there is one, else its task of that chosen name — on submit (so a
re-submit with the returned id, or with an id admitted before ids were scoped, deduplicates into
that task) and on every read. Mesh-assigned ids and every id stored before are unchanged, so
nothing needs migrating.
"""

from __future__ import annotations

import hashlib
import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_DIGEST_CHARS = 24  # 120 bits
_PREFIX_CHARS = 37  # 37 + "_" + 24 = 62: room for a replay's "-r" within 64
_DOMAIN = b"tidemesh/scoped-task-id/v1\x00"
# 26 characters, 130 bits of which the top 2 are zero (48 bits of time then 80 random): 0-7 first.
_ASSIGNED_RE = re.compile(r"^[0-7][0-9a-hjkmnp-tv-z]{25}$")


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_task_id(now_ms: int | None = None) -> str:
    """A ULID-style id: 48 bits of milliseconds then 80 random bits."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _base32((now_ms << 80) | int.from_bytes(os.urandom(10), "big"), 26)


def assigned_at_ms(task_id: str) -> int | None:
    """The millisecond a mesh-assigned id was made at (its first 10 characters); None for an id of
    another shape (scoped, a replay's, or one stored before ids were scoped that is no ULID)."""
    if not _ASSIGNED_RE.match(task_id):
        return None
    value = 0
    for char in task_id[:10]:  # 50 bits: the 2 zero bits, then the 48 of milliseconds
        value = value * 32 + _ALPHABET.index(char)
    return value


def scoped_task_id(tenant: str, chosen: str) -> str:
    """The mesh id of the task `tenant` names `chosen` (both subject tokens, so neither holds NUL)."""
    digest = hashlib.sha256(_DOMAIN + tenant.encode() + b"\x00" + chosen.encode()).digest()
    return f"{chosen[:_PREFIX_CHARS]}_{_base32(int.from_bytes(digest[:15], 'big'), _DIGEST_CHARS)}"
