"""NATS users, their permissions by role, and the TLS blocks of ``nats.conf``.

Every component connects as its own user (`ensure_nats_users`: ``<dir>/<component>.json``, mode
600, made once and kept across restarts). `authorization_block` renders the users with the
permissions of their role (`permissions`); `tls_block` makes the client port TLS-only with the
mesh's leaf (clients verify the server against the local CA; they authenticate by password,
not by certificate); `cluster_tls_block` makes the routes of ``--cluster 3`` mutual TLS under
the same CA, with a route password on top (any component's leaf is signed by that CA too).

The rendered text holds passwords: write it owner-only (`write_private_config`), or keep it in a
file of its own that ``nats.conf`` includes.

Permissions follow what the real code sends (nats-py 2.16):

- a JetStream publish is a request on the stream's subject (the ack comes to ``_INBOX.>``);
- ``js.stream_info``/``add_stream``/``update_stream`` → ``$JS.API.STREAM.INFO|CREATE|UPDATE.<s>``;
- a durable consumer (``durable_name`` only) → ``$JS.API.CONSUMER.DURABLE.CREATE.<s>.<c>``; an
  ordered consumer (KV watch, ``kv.keys()``) → ``$JS.API.CONSUMER.CREATE.<s>``, then
  ``CONSUMER.INFO.<s>.<generated>``, flow control replies on ``$JS.FC.<s>.>``;
- a pull → ``$JS.API.CONSUMER.MSG.NEXT.<s>.<c>``; ack/nak/in-progress/term → ``$JS.ACK.<s>.>``;
- ``get_last_msg(direct=True)`` → ``$JS.API.DIRECT.GET.<s>.<subject>``; a batched direct get →
  ``$JS.API.DIRECT.GET.<s>``; ``get_msg`` → ``$JS.API.STREAM.MSG.GET.<s>``; ``kv.get`` → a direct
  get on ``KV_<bucket>``; KV writes (put, create, update, delete) → a publish on ``$KV.<bucket>.<key>``;
- ``delete_msg`` → ``$JS.API.STREAM.MSG.DELETE.<s>`` (readers set junk aside: `Quarantine`);
  ``purge_stream(s, subject=...)`` → ``$JS.API.STREAM.PURGE.<s>`` — the same subject as a whole
  purge, so no service purges: a subject is emptied by deleting its messages by sequence
  (`mesh.fabric._index.delete_subject`).

Deleting a stream or a bucket (``$JS.API.STREAM.DELETE.>``; a bucket is stream ``KV_<bucket>``)
and purging one are the admin's alone (`cli`); every other user has both denied outright.

The audit stream (``TM_AUDIT``, `mesh.audit`) is append-only for every service: the gateway (the
one writer, `AUDIT_WRITERS`) may create it, append to ``tm.audit.>`` and read it by sequence;
updating it (which could shorten its limits), deleting or purging it or one of its messages is
denied to every user but the admin — explicitly, so no later grant can open it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mesh.audit._stream import AUDIT_PREFIX, AUDIT_STREAM
from mesh.fabric._deadletters import ALERT_SUBJECT, DLQ_PREFIX, DLQ_STREAM
from mesh.fabric._index import TASKS_PREFIX, TASKS_STREAM
from mesh.fabric._kinds import KINDS_BUCKET, SESSIONS_BUCKET
from mesh.fabric._ordering import ORDER_KEYS_BUCKET, ORDERED_PREFIX, ORDERED_STREAM
from mesh.fabric._subjects import (
    BELL_PREFIX,
    CANCEL_PREFIX,
    CONFIG_BUCKET,
    CONFIG_PREFIX,
    EVENTS_PREFIX,
    EVENTS_STREAM,
    IDEMPOTENCY_BUCKET,
    INFERENCE_BUCKET,
    LIVE_PREFIX,
    POLICY_ALERT_PREFIX,
    POOLS,
    QUARANTINE_ALERT_SUBJECT,
    QUARANTINE_PREFIX,
    QUARANTINE_STREAM,
    RESTART_ALERT_SUBJECT,
    SCALE_PREFIX,
    WORK_PREFIX,
    WORK_STREAM,
)
from mesh.fabric._topology import TOPOLOGY_BUCKETS
from mesh.priority import CLASS_NAMES
from mesh.security._ca import LeafFiles, write_private

# The gateway's credential store (services/gateway/_auth.py spells it too; a unit test pins both).
CREDENTIALS_BUCKET = "tm_credentials"
# The schema registry (mesh/schemas/_store.py spells it too; tests/unit/test_schema_store.py pins both).
SCHEMAS_BUCKET = "tm_schemas"
# The scheduler's reconciler's durable consumer on TM_TASKS (services/scheduler/_reconcile.py).
RECONCILER_CONSUMER = "tm-reconciler"

NATS_COMPONENTS = ("scheduler", "worker", "gateway", "inference", "supervisor", "cli")
STREAMS = (WORK_STREAM, EVENTS_STREAM, ORDERED_STREAM, DLQ_STREAM, TASKS_STREAM, QUARANTINE_STREAM)
# Who runs `ensure_topology` at start (create or update every stream and bucket): the scheduler
# only — updating a stream can rewrite its limits or subjects. The gateway and the workers wait
# for it (`await_topology`: stream info only).
TOPOLOGY_DECLARERS = frozenset({"scheduler"})
TOPOLOGY_WAITERS = frozenset({"worker", "gateway"})
# Who appends to the audit (administrative actions are recorded where they are checked).
AUDIT_WRITERS = frozenset({"gateway"})
TLS_TIMEOUT_S = 2.0

_USER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --- users ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NatsUser:
    """One component's NATS credential; the password never shows in a repr (logs, tracebacks)."""

    user: str
    password: str = field(repr=False)

    @classmethod
    def generate(cls, user: str) -> NatsUser:
        return cls(_checked_user(user), secrets.token_urlsafe(32))

    @classmethod
    def load(cls, path: Path) -> NatsUser:
        """The user stored at `path`; refuses a file other users could read."""
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by others (mode {mode & 0o777:o}); it must be 600")
        doc = json.loads(path.read_text())
        if not (isinstance(doc, dict) and isinstance(doc.get("user"), str) and isinstance(doc.get("password"), str)):
            raise ValueError(f"{path} is not a NATS user file (user, password)")
        return cls(_checked_user(doc["user"]), _checked_password(doc["password"]))

    def to_json(self) -> bytes:
        return json.dumps({"user": self.user, "password": self.password}).encode()


def _checked_user(user: str) -> str:
    if not _USER_RE.match(user):
        raise ValueError(f"a NATS user name must match {_USER_RE.pattern}, got {user!r}")
    return user


def _checked_password(password: str) -> str:
    if not password or any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        raise ValueError("a NATS password must be non-empty, without control characters")
    return password


def ensure_nats_users(directory: Path, components: Iterable[str]) -> dict[str, Path]:
    """``<directory>/<component>.json`` for each component, created once (mode 600), kept after.

    A file is written in full under a private temporary name, then hard-linked into place: the
    link fails if the name exists, so two starters racing keep one password, and no reader ever
    sees half a file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    paths: dict[str, Path] = {}
    for component in components:
        path = directory / f"{_checked_user(component)}.json"
        if not path.exists():
            _create_once(path, NatsUser.generate(component).to_json())
        NatsUser.load(path)  # readable, well-formed and private, or fail at start
        paths[component] = path
    return paths


def _create_once(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another starter won: its password stays
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- permissions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Permissions:
    """A NATS user's publish and subscribe allow/deny lists (deny wins over allow)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()

    def may_publish(self, subject: str) -> bool:
        """Whether the server lets this user publish on `subject` (for checks and tests)."""
        return _matches_any(self.publish, subject) and not _matches_any(self.publish_deny, subject)

    def may_subscribe(self, subject: str) -> bool:
        return _matches_any(self.subscribe, subject) and not _matches_any(self.subscribe_deny, subject)


def _matches_any(patterns: Iterable[str], subject: str) -> bool:
    return any(subject_matches(pattern, subject) for pattern in patterns)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` one token, ``>`` one or more trailing tokens."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(tokens) == len(wanted)


def _api(*parts: str) -> str:
    return ".".join(("$JS.API", *parts))


def _declare_topology() -> list[str]:
    """`ensure_topology`: info/create/update the streams, info/create the buckets, and drop the
    whole-lane consumers an older tidemesh left (by their exact names)."""
    grants = [_api("STREAM", verb, stream) for stream in STREAMS for verb in ("INFO", "CREATE", "UPDATE")]
    grants += [_api("STREAM", verb, f"KV_{bucket}") for bucket in TOPOLOGY_BUCKETS for verb in ("INFO", "CREATE")]
    grants += [_api("CONSUMER", "DELETE", WORK_STREAM, f"work-{pool}-{lane}") for pool in POOLS for lane in CLASS_NAMES]
    return grants


def _inspect_topology() -> list[str]:
    """`await_topology`: stream info of every stream and bucket, nothing that changes one."""
    return [_api("STREAM", "INFO", name) for name in (*STREAMS, *(f"KV_{bucket}" for bucket in TOPOLOGY_BUCKETS))]


def _quarantine() -> list[str]:
    """`Quarantine.set_aside`: the record and its alert."""
    return [f"{QUARANTINE_PREFIX}.>", QUARANTINE_ALERT_SUBJECT]


def _read_events() -> list[str]:
    """`EventLog` reads (batched and last-by-subject direct gets); junk it finds is quarantined and
    deleted from the chain so fenced writers are not blocked by it."""
    return [
        _api("DIRECT", "GET", EVENTS_STREAM),
        _api("DIRECT", "GET", EVENTS_STREAM, ">"),
        _api("STREAM", "MSG", "DELETE", EVENTS_STREAM),
        *_quarantine(),
    ]


def _append_events() -> list[str]:
    return [f"{EVENTS_PREFIX}.>"]


def _put_work() -> list[str]:
    """`WorkQueue.put`: the item, then its doorbell."""
    return [f"{WORK_PREFIX}.>", f"{BELL_PREFIX}.>"]


def _kv_read(bucket: str) -> list[str]:
    stream = f"KV_{bucket}"
    return [
        _api("STREAM", "INFO", stream),
        _api("DIRECT", "GET", stream),
        _api("DIRECT", "GET", stream, ">"),
        _api("STREAM", "MSG", "GET", stream),
    ]


def _kv_watch(bucket: str) -> list[str]:
    """`kv.watch`/`kv.keys()`: an ordered consumer (no name) and its info and flow control."""
    stream = f"KV_{bucket}"
    return [
        _api("CONSUMER", "CREATE", stream),
        _api("CONSUMER", "CREATE", stream, ">"),
        _api("CONSUMER", "INFO", stream, "*"),
        f"$JS.FC.{stream}.>",
    ]


def _kv_write(bucket: str) -> list[str]:
    return [f"$KV.{bucket}.>"]


def _ordering(park: bool) -> list[str]:
    """`KeySequencer`: the key's cursor in KV, the parked items read back (and parked, by admission)."""
    grants = [_api("STREAM", "MSG", "GET", ORDERED_STREAM), *_kv_read(ORDER_KEYS_BUCKET), *_kv_write(ORDER_KEYS_BUCKET)]
    return grants + ([f"{ORDERED_PREFIX}.>"] if park else [])


def _dead_letters(manage: bool) -> list[str]:
    """`DeadLetterStore`: record and read (workers); list, replay and purge (the gateway's admin RPCs)."""
    grants = [
        f"{DLQ_PREFIX}.>",
        _api("STREAM", "MSG", "GET", DLQ_STREAM),
        _api("STREAM", "MSG", "DELETE", DLQ_STREAM),  # withdraw a version, set a bad one aside
        *_quarantine(),
    ]
    if manage:
        grants.append(_api("STREAM", "INFO", DLQ_STREAM))  # purging a task's record deletes by sequence
    else:
        grants.append(ALERT_SUBJECT)
    return grants


def _pull(stream: str, consumers: str, *, create: bool) -> list[str]:
    """Pull from durable consumers of `stream` named `consumers` (a name or ``*``), ack what came."""
    grants = [_api("CONSUMER", "MSG", "NEXT", stream, consumers), f"$JS.ACK.{stream}.>"]
    if create:
        grants.append(_api("CONSUMER", "DURABLE", "CREATE", stream, consumers))
        grants.append(_api("CONSUMER", "INFO", stream, consumers))
    return grants


def _audit() -> list[str]:
    """`mesh.audit`: declare TM_AUDIT (create never changes an existing stream), append, read by sequence."""
    return [
        f"{AUDIT_PREFIX}.>",
        _api("STREAM", "INFO", AUDIT_STREAM),
        _api("STREAM", "CREATE", AUDIT_STREAM),
        _api("STREAM", "MSG", "GET", AUDIT_STREAM),
    ]


def _policy_watch() -> list[str]:
    """`mesh.policy.PolicyWatch` in `tidemesh up`: the work and dead-letter streams' state (stream info
    only, never a message), and its alerts."""
    return [_api("STREAM", "INFO", WORK_STREAM), _api("STREAM", "INFO", DLQ_STREAM), f"{POLICY_ALERT_PREFIX}.>"]


def _role(component: str, pools: Iterable[str] | None) -> tuple[list[str], list[str]]:
    """(publish allow, subscribe allow) of one component: the one declaration of each role."""
    inbox = ["_INBOX.>"]
    declare = (
        _declare_topology()
        if component in TOPOLOGY_DECLARERS
        else _inspect_topology()
        if component in TOPOLOGY_WAITERS
        else []
    )
    if component == "scheduler":
        # Admission (events, work, parking, index, idempotency), cancel, scale, queue and flow
        # sampling, the reconciler on TM_TASKS, the dead-worker reaper's naks, backend status.
        publish = [
            *declare,
            *_append_events(),
            *_read_events(),
            *_put_work(),
            *_ordering(park=True),
            f"{TASKS_PREFIX}.>",
            # TaskIndex.remove takes back one entry (a client-chosen id claimed twice): by sequence.
            _api("STREAM", "MSG", "GET", TASKS_STREAM),
            _api("STREAM", "MSG", "DELETE", TASKS_STREAM),
            *_kv_read(IDEMPOTENCY_BUCKET),
            *_kv_write(IDEMPOTENCY_BUCKET),
            f"{CANCEL_PREFIX}.>",
            f"{SCALE_PREFIX}.>",
            _api("STREAM", "INFO", WORK_STREAM),
            _api("CONSUMER", "LIST", WORK_STREAM),
            _api("STREAM", "MSG", "GET", WORK_STREAM),
            f"$JS.ACK.{WORK_STREAM}.>",  # naks of a dead worker's items
            *_pull(TASKS_STREAM, RECONCILER_CONSUMER, create=True),
            *_kv_read(INFERENCE_BUCKET),
            *_kv_watch(INFERENCE_BUCKET),
            *_kv_write(INFERENCE_BUCKET),  # a junk entry is deleted after it is quarantined
            *_kv_read(KINDS_BUCKET),  # admission of user kinds
            *_kv_watch(KINDS_BUCKET),
            *_kv_read(SCHEMAS_BUCKET),  # payloads of user kinds are checked against their schema
        ]
        return publish, [*inbox, f"{POLICY_ALERT_PREFIX}.>"]  # policy alerts, counted in its metrics
    if component == "worker":
        scoped = list(pools) if pools is not None else list(POOLS)
        unknown = set(scoped) - set(POOLS)
        if unknown or not scoped:
            raise ValueError(f"pools must be some of {POOLS}, got {sorted(scoped)}")
        # Consumer names are one token (work-<pool>-<lane>-<tenant>) and NATS wildcards match
        # whole tokens only, so pulls cannot be narrowed to pools here; the doorbells can.
        publish = [
            *declare,
            *_append_events(),
            *_read_events(),
            f"{LIVE_PREFIX}.>",
            *_put_work(),  # the next step (any pool), a boosted child's copy, a released ordered task
            *_ordering(park=False),
            *_dead_letters(manage=False),
            _api("STREAM", "INFO", WORK_STREAM),
            *_pull(WORK_STREAM, "*", create=True),
            *_kv_read(KINDS_BUCKET),
            *_kv_read(SCHEMAS_BUCKET),
            # Which inference replica holds which model, and its load: calls are placed by it.
            *_kv_read(INFERENCE_BUCKET),
            *_kv_watch(INFERENCE_BUCKET),
            RESTART_ALERT_SUBJECT,  # why the supervisor restarted it (mesh.runtime.announce_restart)
        ]
        if pools is None:
            # A general worker also hosts worker-protocol sessions (`--sessions`): it records them
            # for every gateway, and dead-letters past their deadline the work no attached worker
            # reads (read in place, then removed: nobody pulls those pools).
            publish += [
                *_kv_watch(KINDS_BUCKET),
                *_kv_read(SESSIONS_BUCKET),
                *_kv_watch(SESSIONS_BUCKET),
                *_kv_write(SESSIONS_BUCKET),
                _api("STREAM", "MSG", "GET", WORK_STREAM),
                _api("STREAM", "MSG", "DELETE", WORK_STREAM),
            ]
        subscribe = [
            *inbox,
            # Every pool's doorbells for a general worker: user kinds' pools are named at run time.
            *((f"{BELL_PREFIX}.>",) if pools is None else (f"{BELL_PREFIX}.{pool}.>" for pool in scoped)),
            f"{CANCEL_PREFIX}.>",
            f"{EVENTS_PREFIX}.>",  # an orchestration step follows its children's events
        ]
        return publish, subscribe
    if component == "gateway":
        # Reads events (hub, GetTask, listing), dead-letter admin, the credential store it owns.
        publish = [
            *declare,
            _api("STREAM", "INFO", f"KV_{CREDENTIALS_BUCKET}"),
            _api("STREAM", "CREATE", f"KV_{CREDENTIALS_BUCKET}"),
            *_read_events(),
            *_dead_letters(manage=True),
            _api("STREAM", "INFO", TASKS_STREAM),
            *_kv_read(CREDENTIALS_BUCKET),
            *_kv_watch(CREDENTIALS_BUCKET),
            *_kv_write(CREDENTIALS_BUCKET),
            # The schema registry it serves (SchemaService) and creates, like the credential store.
            _api("STREAM", "INFO", f"KV_{SCHEMAS_BUCKET}"),
            _api("STREAM", "CREATE", f"KV_{SCHEMAS_BUCKET}"),
            *_kv_read(SCHEMAS_BUCKET),
            *_kv_watch(SCHEMAS_BUCKET),
            *_kv_write(SCHEMAS_BUCKET),
            # The kind registry it serves (KindService: ListKinds shows sessions and queued user
            # work); it relays workers to the session hosts and runs no step itself.
            *_kv_read(KINDS_BUCKET),
            *_kv_watch(KINDS_BUCKET),
            *_kv_write(KINDS_BUCKET),
            *_kv_read(SESSIONS_BUCKET),
            *_kv_watch(SESSIONS_BUCKET),
            _api("STREAM", "INFO", WORK_STREAM),
            # Which inference replica holds which model: InferenceService is relayed by it.
            *_kv_read(INFERENCE_BUCKET),
            *_kv_watch(INFERENCE_BUCKET),
            # The administrative actions it checks, recorded (and served to admins and auditors).
            *_audit(),
            # Configuration changes it relays to the supervisor, and the revisions it reads.
            f"{CONFIG_PREFIX}.plan",
            f"{CONFIG_PREFIX}.apply",
            f"{CONFIG_PREFIX}.abort.*",
            *_kv_read(CONFIG_BUCKET),
            *_kv_watch(CONFIG_BUCKET),
        ]
        return publish, [*inbox, f"{EVENTS_PREFIX}.>", f"{LIVE_PREFIX}.>", f"{CONFIG_PREFIX}.progress.>"]
    if component == "inference":
        return [_api("STREAM", "INFO", f"KV_{INFERENCE_BUCKET}"), *_kv_write(INFERENCE_BUCKET)], inbox
    if component == "supervisor":
        # Its health probe asks JetStream's account info; the local autoscaler follows recommendations;
        # the configuration controller keeps the revisions and answers plans and applies.
        publish = [
            _api("INFO"),
            *_policy_watch(),
            _api("STREAM", "CREATE", f"KV_{CONFIG_BUCKET}"),
            *_kv_read(CONFIG_BUCKET),
            *_kv_watch(CONFIG_BUCKET),
            *_kv_write(CONFIG_BUCKET),
            f"{CONFIG_PREFIX}.progress.>",
        ]
        config = [f"{CONFIG_PREFIX}.plan", f"{CONFIG_PREFIX}.apply", f"{CONFIG_PREFIX}.abort.*"]
        return publish, [*inbox, f"{SCALE_PREFIX}.>", *config]
    if component == "cli":
        return [">"], [">"]  # the operators' admin: everything, deletion included
    raise ValueError(f"no NATS role for {component!r} (known: {', '.join(NATS_COMPONENTS)})")


def permissions(component: str, pools: Iterable[str] | None = None) -> Permissions:
    """What `component` may publish and subscribe to; `pools` narrows a worker to its pools."""
    publish, subscribe = _role(component, pools)
    if component == "cli":
        return Permissions(tuple(publish), tuple(subscribe))
    deny = ["$JS.API.STREAM.DELETE.>"]  # no stream, no bucket is deleted but by the admin
    purged = {stream for stream in STREAMS if _api("STREAM", "PURGE", stream) in publish}
    if purged:  # deny wins over allow, so the other streams and every bucket are denied one by one
        buckets = (*TOPOLOGY_BUCKETS, CREDENTIALS_BUCKET, SCHEMAS_BUCKET, CONFIG_BUCKET)
        deny += [_api("STREAM", "PURGE", stream) for stream in STREAMS if stream not in purged]
        deny += [_api("STREAM", "PURGE", f"KV_{bucket}") for bucket in buckets]
    else:
        deny.append(_api("STREAM", "PURGE", ">"))
    if component not in ("scheduler", "worker"):
        deny.append(f"{EVENTS_PREFIX}.>")  # only the scheduler and workers append task events
    if component != "gateway":
        deny.append(f"$KV.{CREDENTIALS_BUCKET}.>")  # only the gateway writes credentials
    # The audit is append-only for every service, whatever else a role is granted.
    deny += [_api("STREAM", verb, AUDIT_STREAM) for verb in ("UPDATE", "PURGE", "DELETE")]
    deny.append(_api("STREAM", "MSG", "DELETE", AUDIT_STREAM))
    if component not in AUDIT_WRITERS:
        deny.append(f"{AUDIT_PREFIX}.>")
    return Permissions(tuple(dict.fromkeys(publish)), tuple(dict.fromkeys(subscribe)), tuple(deny))


# --- nats.conf blocks -------------------------------------------------------------------------


def quote(text: str) -> str:
    """A double-quoted nats.conf string (no variable expansion inside quotes)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("a nats.conf string must not hold control characters")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(quote(item) for item in items) + "]"


def _permissions_text(grant: Permissions) -> str:
    def side(allow: tuple[str, ...], deny: tuple[str, ...]) -> str:
        if not allow:  # an empty allow list would restrict nothing: deny everything instead
            return f"{{ deny: {_list(('>',))} }}"
        parts = [f"allow: {_list(allow)}"] + ([f"deny: {_list(deny)}"] if deny else [])
        return "{ " + ", ".join(parts) + " }"

    return (
        "{ publish: "
        + side(grant.publish, grant.publish_deny)
        + ", subscribe: "
        + side(grant.subscribe, grant.subscribe_deny)
        + " }"
    )


def authorization_block(
    users: Mapping[str, NatsUser],
    grants: Mapping[str, Permissions] | None = None,
    timeout_s: float = TLS_TIMEOUT_S,
) -> str:
    """``authorization { users: [...] }``: each component's user with its role's permissions.

    `users` maps a component (its role) to its user; `grants` overrides a role's permissions (a
    worker narrowed to its pools). Connections without a listed user are refused."""
    if not users:
        raise ValueError("authorization needs at least one user")
    lines = ["authorization {", f"  timeout: {timeout_s:g}", "  users: ["]
    for component, user in users.items():
        grant = (grants or {}).get(component) or permissions(component)
        lines.append(
            f"    {{ user: {quote(user.user)}, password: {quote(_checked_password(user.password))}, "
            f"permissions: {_permissions_text(grant)} }}"
        )
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def tls_block(leaf: LeafFiles, timeout_s: float = TLS_TIMEOUT_S) -> str:
    """The client port's ``tls {}``: TLS only, the server's leaf; no client certificates asked."""
    return (
        "\n".join(
            [
                "tls {",
                f"  cert_file: {quote(str(leaf.cert))}",
                f"  key_file: {quote(str(leaf.key))}",
                f"  ca_file: {quote(str(leaf.ca))}",
                "  verify: false",
                f"  timeout: {timeout_s:g}",
                "}",
            ]
        )
        + "\n"
    )


def cluster_tls_block(leaf: LeafFiles, route_user: NatsUser | None = None, timeout_s: float = TLS_TIMEOUT_S) -> str:
    """The lines inside ``cluster {}`` that secure its routes: mutual TLS under the local CA
    (each node presents its leaf and checks the peer's), and `route_user`'s password if given
    (every route URL must then carry it: `route_url`)."""
    lines = [
        "  tls {",
        f"    cert_file: {quote(str(leaf.cert))}",
        f"    key_file: {quote(str(leaf.key))}",
        f"    ca_file: {quote(str(leaf.ca))}",
        "    verify: true",
        f"    timeout: {timeout_s:g}",
        "  }",
    ]
    if route_user is not None:
        lines += [
            "  authorization {",
            f"    user: {quote(route_user.user)}",
            f"    password: {quote(_checked_password(route_user.password))}",
            f"    timeout: {timeout_s:g}",
            "  }",
        ]
    return "\n".join(lines) + "\n"


def route_url(port: int, route_user: NatsUser | None = None, host: str = "127.0.0.1") -> str:
    """A route to a node's cluster port, with the route credential if routes require one."""
    if route_user is None:
        return f"nats-route://{host}:{port}"
    return f"nats-route://{route_user.user}:{route_user.password}@{host}:{port}"


def write_private_config(path: Path, text: str) -> None:
    """Write a config that holds passwords: owner-only from the first byte, swapped in atomically."""
    write_private(path, text.encode())
