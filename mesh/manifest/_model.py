"""The manifest's model: the desired state of one mesh, as typed, frozen sections.

Every default is what a bare ``tidemesh up`` runs (a unit test holds them to the services' own
defaults). A field marked ``enforced=False`` is declared now — a manifest may say it, the schema
publishes it — and acted on by a later release (its description says so); `declared_only` lists
the ones a manifest sets away from their defaults, so `tidemesh up` can say it does not act on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from mesh.access import ALIASES, BUILTIN_NAMES, BY_NAME, unknown_action
from mesh.manifest._fields import SecretRef, setting

API_VERSION = "tidemesh.dev/v1alpha1"
KIND = "Mesh"

# The names the mesh's own vocabularies use (mesh.fabric.POOLS, mesh.priority.CLASS_NAMES,
# mesh.fabric TOKEN_RE, mesh.tasks KIND_NAME_RE); a unit test holds them equal.
POOL_NAMES = ("ingestion", "orchestration", "inference", "post-processing")
CLASS_NAMES = ("interactive", "standard", "batch")
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
KIND_PATTERN = r"^[a-z][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$"
ACTION_PATTERN = r"^[a-z]+(\.[a-z]+)+$"  # an action's shape; which ones exist, Role.check says
# A host of a mesh over several: a DNS name or an IP address (IPv4 matches the first form).
HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^[0-9a-fA-F:]{2,39}$"
APPLY_LATER = "`tidemesh config apply` acts on it in a later release"


@dataclass(frozen=True)
class Metadata:
    """Who this manifest is: names that revisions and audit records will carry."""

    name: str = setting("tidemesh", doc="The mesh's name.", pattern=TOKEN_PATTERN)


@dataclass(frozen=True)
class Caps:
    """Resource caps of a worker process; null is no cap."""

    memory_mb: int | None = setting(
        None,
        doc="Most resident memory (MiB, with its children's) a worker may hold: past it the supervisor kills "
        "it, restarts it and its task is retried, with an alert.",
        minimum=64,
        tradeoff="Too low restarts workers under honest load; none lets one leaking step take the host.",
    )
    cpus: float | None = setting(
        None,
        doc="CPU cores one worker process (with its children) may use, e.g. 0.5: held by a cgroup of its own "
        "(cpu.max, or cpu.cfs_quota_us on cgroup v1); where no cgroup is writable, approximated by pinning it to "
        "that many whole cores, which `tidemesh up` says.",
        minimum=0.01,
        tradeoff="A cap keeps one busy step from starving the host's other workers; too low and a worker falls "
        "behind on its heartbeats and steps under honest load.",
    )
    gpu_memory_mb: int | None = setting(
        None,
        doc="Most GPU memory (MiB, with its children's, as NVML reports it) a worker may hold: past it the "
        "supervisor kills it, restarts it and its task is retried, with an alert; CuPy and JAX are told a limit "
        "just below it.",
        minimum=1,
        tradeoff="A cap keeps one step from taking a GPU other workers share; the CUDA context alone takes a few "
        "hundred MiB of it.",
    )


@dataclass(frozen=True)
class Autoscale:
    """Replica bounds the scheduler recommends within, and `tidemesh up` acts on."""

    min: int = setting(1, doc="Fewest dedicated workers of the pool.", minimum=0)
    max: int = setting(1, doc="Most dedicated workers of the pool.", minimum=1)

    def check(self) -> Iterator[tuple[str, str]]:
        if self.min > self.max:
            yield "min", f"must be ≤ max ({self.max}), got {self.min}"


@dataclass(frozen=True)
class GeneralPool:
    """The general worker processes: each serves every pool and hosts worker-protocol sessions."""

    workers: int = setting(
        1,
        doc="General worker processes (`--workers`).",
        minimum=0,
        tradeoff="One is enough on a laptop; two keep work moving while one restarts.",
    )
    concurrency: int = setting(32, doc="Steps one general worker runs at once.", minimum=1)
    session_resume_seconds: float = setting(
        10.0,
        doc="How long a worker-protocol session outlives a broken stream before its assignments go to others.",
        exclusive_minimum=0,
        tradeoff="Longer rides out a flaky network; shorter moves a vanished worker's work sooner.",
    )
    caps: Caps = setting(
        default_factory=Caps,
        doc="Every worker's caps where the pools it serves set none (memory: build_plan's '*').",
    )


@dataclass(frozen=True)
class Pool:
    """One pool's dedicated workers (besides the general ones, which serve it too)."""

    workers: int = setting(0, doc="Dedicated worker processes of this pool (`--pool-workers POOL=N`).", minimum=0)
    concurrency: int = setting(
        32, doc="Steps one dedicated worker runs at once (`--pool-concurrency POOL=N`).", minimum=1
    )
    autoscale: Autoscale | None = setting(
        None,
        doc="Scale the pool's dedicated workers within these bounds (`--autoscale POOL=MIN:MAX`); "
        "null: no recommendations, a standby worker whenever the pool has none alive.",
    )
    caps: Caps = setting(
        default_factory=Caps,
        doc="Caps of a worker serving this pool: its dedicated workers, and the general ones (a worker "
        "serving several pools gets the smallest of their caps).",
    )


@dataclass(frozen=True)
class Pools:
    """Worker processes: the general ones and each pool's dedicated ones."""

    general: GeneralPool = setting(default_factory=GeneralPool, doc="Workers that serve every pool.")
    ingestion: Pool = setting(default_factory=Pool, doc="Steps that take input in (echo, chunking, planning).")
    orchestration: Pool = setting(default_factory=Pool, doc="Steps that spawn and await other tasks (fan-out).")
    inference: Pool = setting(default_factory=Pool, doc="Steps that call the inference service (embed, infer).")
    post_processing: Pool = setting(
        default_factory=Pool, key="post-processing", doc="Steps that aggregate and deliver (streams, webhooks)."
    )

    def by_name(self) -> dict[str, Pool]:
        return {
            "ingestion": self.ingestion,
            "orchestration": self.orchestration,
            "inference": self.inference,
            "post-processing": self.post_processing,
        }


_WAIT_BOUND_DOC = "Longest a queued item of this class should wait before it starts ahead of others."
_WAIT_BOUND_TRADEOFF = "Tighter bounds serve this class sooner at the expense of the classes below it."
_MAX_DEPTH_DOC = "Items (queued + running) the lane may hold across pools before submits are refused (429)."
_MAX_DEPTH_TRADEOFF = "Deeper absorbs bursts but lets a backlog grow that nobody will wait for."


# One section per class, each with its own defaults (the published schema shows them).
@dataclass(frozen=True)
class InteractiveLane:
    """The interactive lane in every pool."""

    wait_bound_seconds: float = setting(0.25, doc=_WAIT_BOUND_DOC, exclusive_minimum=0, tradeoff=_WAIT_BOUND_TRADEOFF)
    max_depth: int = setting(5_000, doc=_MAX_DEPTH_DOC, minimum=1, tradeoff=_MAX_DEPTH_TRADEOFF)


@dataclass(frozen=True)
class StandardLane:
    """The standard lane in every pool."""

    wait_bound_seconds: float = setting(5.0, doc=_WAIT_BOUND_DOC, exclusive_minimum=0, tradeoff=_WAIT_BOUND_TRADEOFF)
    max_depth: int = setting(50_000, doc=_MAX_DEPTH_DOC, minimum=1, tradeoff=_MAX_DEPTH_TRADEOFF)


@dataclass(frozen=True)
class BatchLane:
    """The batch lane in every pool."""

    wait_bound_seconds: float = setting(60.0, doc=_WAIT_BOUND_DOC, exclusive_minimum=0, tradeoff=_WAIT_BOUND_TRADEOFF)
    max_depth: int = setting(500_000, doc=_MAX_DEPTH_DOC, minimum=1, tradeoff=_MAX_DEPTH_TRADEOFF)


@dataclass(frozen=True)
class Slots:
    """How a worker's slots are split between the classes."""

    interactive_reserve: int | None = setting(
        None, doc="Extra slots only interactive work may use (null: the worker's default).", minimum=0
    )
    guaranteed: int | None = setting(
        None,
        doc="Shared slots interactive work may never take, so standard and batch meet their bounds "
        "(null: a quarter of the concurrency, at least 1).",
        minimum=0,
    )


@dataclass(frozen=True)
class Classes:
    """Priority classes (interactive, standard, batch): their lanes' wait bounds and depths."""

    interactive: InteractiveLane = setting(
        default_factory=InteractiveLane, doc="The most urgent class: a person is waiting."
    )
    standard: StandardLane = setting(default_factory=StandardLane, doc="The default class: work someone expects soon.")
    batch: BatchLane = setting(default_factory=BatchLane, doc="Work nobody waits on: it yields to the other classes.")

    def lanes(self) -> dict[str, InteractiveLane | StandardLane | BatchLane]:
        return {"interactive": self.interactive, "standard": self.standard, "batch": self.batch}

    slots: Slots = setting(default_factory=Slots, doc="Slots per class in each worker.")


@dataclass(frozen=True)
class TenantDefaults:
    """What every tenant gets, named or not."""

    submits_per_second: float = setting(
        1000.0,
        doc="Submits per second one tenant may make, per gateway (0: no limit).",
        minimum=0,
        tradeoff="Lower keeps one tenant from taking the mesh's durable-write budget; 0 trusts every tenant.",
    )
    submit_burst: float = setting(2000.0, doc="Submits one tenant may make at once.", minimum=1)
    max_queued: int = setting(
        100_000,
        doc="A tenant's quota: items (queued + running) it may hold across lanes before its submits are refused.",
        minimum=1,
    )


@dataclass(frozen=True)
class Tenant:
    """One named tenant's share and limits beyond the defaults."""

    weight: float = setting(
        1.0, doc="Fair-share weight against other tenants (`--tenant-weights`); others weigh 1.", exclusive_minimum=0
    )
    max_concurrency: int | None = setting(
        None,
        doc="Most items of this tenant in flight at once per pool and class, across workers (`--tenant-concurrency`).",
        minimum=1,
    )
    max_queued: int | None = setting(
        None,
        doc="This tenant's own quota (null: tenants.defaults.maxQueued).",
        minimum=1,
        enforced=False,
        later=APPLY_LATER,
    )
    submits_per_second: float | None = setting(
        None, doc="This tenant's own submit rate (null: the default).", minimum=0, enforced=False, later=APPLY_LATER
    )
    allowed_kinds: tuple[str, ...] | None = setting(
        None,
        doc="The kinds this tenant may submit (null: every kind).",
        pattern=KIND_PATTERN,
        enforced=False,
        later=APPLY_LATER,
    )


@dataclass(frozen=True)
class Tenants:
    """Tenants: the defaults every tenant gets and the named ones' own."""

    defaults: TenantDefaults = setting(default_factory=TenantDefaults, doc="What every tenant gets, named or not.")
    named: dict[str, Tenant] = setting(
        default_factory=dict, doc="Tenants by name, with their own weights and limits.", key_pattern=TOKEN_PATTERN
    )


@dataclass(frozen=True)
class KindStep:
    """One step of a declared kind's pipeline."""

    name: str = setting(doc="The step's name.", pattern=r"^[A-Za-z0-9_-]{1,32}$", required=True)
    timeout_seconds: float | None = setting(None, doc="This step's own timeout (null: the kind's).", minimum=0)
    max_attempts: int | None = setting(None, doc="This step's own attempts (null: the kind's).", minimum=1)


@dataclass(frozen=True)
class KindSpec:
    """A task kind of your own and how its steps are routed to workers."""

    input_type: str = setting(doc="The input message's full name, e.g. acme.v1.ResizeRequest.", required=True)
    output_type: str = setting(doc="The output message's full name.", required=True)
    steps: tuple[KindStep, ...] = setting(doc="The pipeline, in order (1-16 steps).", required=True)
    labels: dict[str, str] = setting(
        default_factory=dict, doc="Labels a worker must advertise, with these values, to serve the kind (routing)."
    )
    max_attempts: int = setting(3, doc="Attempts per step before a retryable failure is dead-lettered.", minimum=1)
    step_timeout_seconds: float = setting(300.0, doc="A step running longer is retried (0: no limit).", minimum=0)

    def check(self) -> Iterator[tuple[str, str]]:
        if not 1 <= len(self.steps) <= 16:
            yield "steps", f"a kind has 1 to 16 steps, got {len(self.steps)}"


@dataclass(frozen=True)
class Tls:
    """TLS on the public port. It is always on: plaintext exists only as experiments.insecure."""

    issuer: Literal["mesh-ca"] = setting(
        "mesh-ca",
        doc="Who issues the public certificate: mesh-ca, the mesh's own root (`tidemesh ca`), which the CLI "
        "and SDK trust by themselves.",
    )


@dataclass(frozen=True)
class Cors:
    """Which browser origins may call the public port (gRPC-Web, REST)."""

    allow_origins: tuple[str, ...] = setting(
        ("*",),
        doc="Origins allowed by CORS; '*' is any.",
        tradeoff="Credentials travel in a header, never a cookie, so '*' lets no page ride a user's session; "
        "name your web apps' origins to keep other pages from calling at all.",
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.allow_origins:
            yield "allowOrigins", "must name at least one origin ('*' for any)"


@dataclass(frozen=True)
class Auth:
    """Who may call: credentials at the gateway."""

    required: bool = setting(
        True,
        doc="Require a credential (API key or JWT) on every call but health (false: `--no-auth`, every caller "
        "let in — development only).",
        tradeoff="Off saves passing a key; the CLI finds the local admin key by itself, so keep it on.",
    )
    jwt_audience: str = setting("tidemesh", doc="The aud claim tokens must carry.")
    step_up: Literal["off", "required"] = setting(
        "off",
        doc="required: sensitive actions (purging dead letters, exporting the audit, minting or revoking admin "
        "keys) want a fresh TOTP second factor — refused with a step-up challenge, then `tidemesh auth step-up`; "
        "each operator enrols one first (`tidemesh auth enroll`).",
        tradeoff="required stops a leaked key from purging or exporting on its own; every such action costs a "
        "code from an authenticator app.",
    )
    jwt_secret: SecretRef | None = setting(
        None,
        doc="The HS256 secret tokens are signed with, by reference (null: the mesh generates "
        "<stateDir>/auth/jwt.secret).",
        enforced=False,
        later=APPLY_LATER,
    )


@dataclass(frozen=True)
class Limits:
    """Limits of the public port beyond the tenants'."""

    credential_submits_per_second: float = setting(
        500.0, doc="Submits per second one credential may make, per gateway (0: no limit).", minimum=0
    )
    credential_burst: float = setting(1000.0, doc="Submits one credential may make at once.", minimum=1)
    request_headers_timeout_seconds: float = setting(
        10.0,
        doc="A client must send a request's headers within this, else Envoy closes the connection (slowloris).",
        exclusive_minimum=0,
    )


@dataclass(frozen=True)
class PublicEndpoint:
    """The one public port: Envoy, in front of the gateways (gRPC, gRPC-Web, REST, WebSocket)."""

    host: str = setting(
        "127.0.0.1",
        doc="The address Envoy listens on (an IP literal).",
        pattern=r"^[0-9.]+$|^[0-9a-fA-F:]+$",
        tradeoff="127.0.0.1 serves this host only; 0.0.0.0 faces the network (TLS and auth stay on).",
    )
    port: int = setting(8080, doc="The public port (0: pick free ports).", minimum=0, maximum=65535)
    gateways: int = setting(
        1,
        doc="Gateway replicas behind Envoy; a session sticks to one.",
        minimum=1,
        tradeoff="Two keep the door open while one restarts; each holds its own connections and limiters.",
    )
    tls: Tls = setting(default_factory=Tls, doc="TLS on the public port (always on).")
    cors: Cors = setting(default_factory=Cors, doc="Which browser origins may call the public port.")
    auth: Auth = setting(default_factory=Auth, doc="Credentials the gateways require.")
    limits: Limits = setting(default_factory=Limits, doc="Per-credential and connection limits.")


@dataclass(frozen=True)
class Endpoints:
    """Where the mesh is reached."""

    public: PublicEndpoint = setting(
        default_factory=PublicEndpoint, doc="The one public port (Envoy), in front of the gateways."
    )


@dataclass(frozen=True)
class Egress:
    """Where tasks may call out of the mesh."""

    webhook_allow: tuple[str, ...] = setting(
        ("http://127.0.0.1:", "http://localhost:"),
        doc="URL prefixes webhook tasks may call.",
        tradeoff="Every prefix is a place a tenant's task can send data to; keep the list to your own services.",
    )


@dataclass(frozen=True)
class Triton:
    """tritonserver beside the embedded CPU model."""

    enabled: bool = setting(
        False,
        doc="Run tritonserver on the project's model repository (`--triton`); the CPU model stays the fallback.",
        tradeoff="Triton serves any model on CPU or GPU; off, the embedded MiniLM on CPU serves embeddings alone.",
    )
    model_repositories: tuple[str, ...] = setting(
        (), doc="Your Triton model repositories, beside the project's (`--model-repository`; they need Triton)."
    )
    capacity: int = setting(4, doc="Model calls in flight per Triton.", minimum=1)
    devices: Literal["auto", "cpu", "gpu"] = setting(
        "auto", doc="What Triton's models run on: auto (a GPU where NVML finds one, and the CPU), cpu, or gpu."
    )


@dataclass(frozen=True)
class CpuBackend:
    """The embedded CPU model (MiniLM on onnxruntime)."""

    enabled: bool = setting(True, doc="Serve the embedded CPU model (false: no fallback when Triton is down).")
    threads: int = setting(1, doc="CPU model workers (the CPU backend's capacity).", minimum=1)
    mode: Literal["process", "thread"] = setting(
        "process", doc="Run the CPU model in worker processes (no GIL shared with the service) or threads."
    )


@dataclass(frozen=True)
class Batching:
    """How the inference service batches calls to a model."""

    max_batch: int = setting(32, doc="Most calls in one batch to a model.", minimum=1)
    max_delay_ms: float = setting(
        5.0,
        doc="Longest a call waits for a batch to fill.",
        minimum=0,
        tradeoff="Longer fills batches (throughput) at the cost of each call's latency.",
    )


@dataclass(frozen=True)
class ModelMemory:
    """The memory models may fill on a backend that loads them on request."""

    budget_mb: float = setting(
        0.0, doc="Memory models may fill; past it the least recently used idle models unload (0: no budget).", minimum=0
    )
    default_model_mb: float = setting(
        256.0, doc="What a model counts against the budget when its config declares no memory_mb.", exclusive_minimum=0
    )


@dataclass(frozen=True)
class SpillBounds:
    """How long a call of each class may expect to wait for a full Triton before it spills to the CPU model."""

    interactive_ms: float = setting(0.0, doc="Interactive calls' spill bound (ms).", minimum=0)
    standard_ms: float = setting(100.0, doc="Standard calls' spill bound (ms).", minimum=0)
    batch_ms: float = setting(1000.0, doc="Batch calls' spill bound (ms).", minimum=0)


@dataclass(frozen=True)
class InferenceAdmission:
    """When the inference service refuses a call (RESOURCE_EXHAUSTED with a retry-after)."""

    max_wait_ms: float = setting(10_000.0, doc="Refuse a call that would expect to queue longer.", exclusive_minimum=0)
    max_waiting: int = setting(1024, doc="Refuse a call when this many already queue per backend.", minimum=1)


@dataclass(frozen=True)
class Inference:
    """The inference service: its replicas, backends, batching and memory."""

    replicas: int = setting(
        1, doc="Inference service replicas (`--inference N`); workers place each call by residency and load.", minimum=1
    )
    default_model: str = setting("all-minilm-l6-v2", doc="The model an embed call gets when it names none.")
    triton: Triton = setting(default_factory=Triton, doc="tritonserver beside the embedded CPU model.")
    cpu: CpuBackend = setting(default_factory=CpuBackend, doc="The embedded CPU model.")
    batching: Batching = setting(default_factory=Batching, doc="How calls to a model are batched.")
    memory: ModelMemory = setting(default_factory=ModelMemory, doc="Memory that models loaded on request may fill.")
    spill_after: SpillBounds = setting(
        default_factory=SpillBounds,
        doc="Per class: how long a call may expect to wait for Triton before it spills to the CPU model.",
    )
    admission: InferenceAdmission = setting(
        default_factory=InferenceAdmission, doc="When the inference service refuses a call."
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if self.triton.model_repositories and not self.triton.enabled:
            yield "triton.enabled", "is false, but triton.modelRepositories are given (Triton serves them)"
        if not self.triton.enabled and not self.cpu.enabled:
            yield "cpu.enabled", "is false and Triton is off: no backend would serve a model"


@dataclass(frozen=True)
class Cluster:
    """JetStream's nodes, and the hosts they run on."""

    nodes: Literal[1, 3, 5] = setting(
        1,
        doc="nats-server nodes (`--cluster`); with 3 or 5, every stream has 3 replicas (R3). On one host they "
        "share its loopback; with hosts, one runs on each.",
        tradeoff="R3 survives a node's loss without losing an acknowledged write; it costs a quorum round "
        "trip per write and three copies on disk.",
    )
    hosts: tuple[str, ...] = setting(
        (),
        doc="A mesh over several hosts (`tidemesh up --join`): every host, by the name or address the others "
        "reach it at, the same list in the same order on each. Each runs one NATS node of the cluster (nodes: "
        "their number) and a full set of the services; every host uses the same ports (endpoints.public.port "
        "and the ones after it). Empty: one host.",
        pattern=HOST_PATTERN,
        tradeoff="Three hosts survive losing one (R3 on three nodes keeps a quorum); five survive two, every "
        "write still going to three of them.",
    )
    host: str | None = setting(
        None,
        doc="This host, by the name or address others reach it at (`--host`): one of hosts (null: the one "
        "whose address this machine has); on one host, a name its leaves answer to besides localhost, for "
        "clients that reach its front door from elsewhere.",
        pattern=HOST_PATTERN,
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.hosts:
            return
        if len(self.hosts) not in (3, 5):
            yield "hosts", f"a mesh over hosts needs 3 or 5 (a JetStream quorum), got {len(self.hosts)}"
        elif self.nodes != len(self.hosts):
            yield "nodes", f"must be the number of hosts ({len(self.hosts)}: one node on each), got {self.nodes}"
        if len(set(self.hosts)) != len(self.hosts):
            yield "hosts", "each host once"
        if self.host is not None and self.host not in self.hosts:
            yield "host", f"must be one of hosts ({', '.join(self.hosts)}), got {self.host!r}"


@dataclass(frozen=True)
class Retention:
    """How long the mesh keeps what it recorded."""

    events_hours: float = setting(
        168.0,
        doc="Task events (and so results) are kept this long.",
        exclusive_minimum=0,
        enforced=False,
        later=APPLY_LATER,
    )
    dead_letters_hours: float = setting(
        720.0, doc="Dead letters are kept this long.", exclusive_minimum=0, enforced=False, later=APPLY_LATER
    )


@dataclass(frozen=True)
class Durability:
    """What an acknowledged write survives."""

    fsync: Literal["always", "interval"] = setting(
        "always",
        doc="JetStream's sync_interval: always (every acknowledged write is on disk first) or interval "
        "(the server's two-minute flush).",
        tradeoff="always loses no acknowledged write in a crash (Jepsen found the lazy default can) and runs "
        "about 2.5 times fewer tasks a second end to end (bench/results/durability.md); interval is fast and "
        "fine where a crash may lose recent work.",
    )
    cluster: Cluster = setting(default_factory=Cluster, doc="JetStream nodes and replicas.")
    ack_wait_seconds: float = setting(
        30.0,
        doc="Seconds before un-acked work is redelivered (a worker died); live workers extend it.",
        exclusive_minimum=0,
        tradeoff="Shorter moves a dead worker's item sooner; longer tolerates long pauses (GC, a busy host).",
    )
    retention: Retention = setting(default_factory=Retention, doc="How long task events and dead letters are kept.")


_MODE_DOC = (
    "audit (recorded: `tidemesh config policy`, an alert, a metric), warn (said by plan and apply too) or "
    "enforce (apply refuses the change)"
)


@dataclass(frozen=True)
class PolicyRule:
    """A policy rule of your own: a CEL expression that holds (is true) over the manifest and the
    live mesh (`mesh.policy`; docs/policies.md lists what a rule reads)."""

    name: str = setting(
        doc="The rule's name (a built-in rule's is refused); alerts go to tm.alert.policy.<name>.",
        pattern=TOKEN_PATTERN,
        required=True,
    )
    expression: str = setting(
        doc="What must hold, in CEL: true when the rule holds. It reads manifest (this document with every "
        "field, keys as written here), routes ({kind: {step: pool}}), live (the running mesh's figures; a rule "
        "that reads it is evaluated only against a running mesh) and, with each, item and key.",
        required=True,
    )
    each: str | None = setting(
        None,
        doc="Evaluate the expression once per entry, e.g. manifest.tenants.named.* or live.workers.* (* is every "
        "key of a mapping or index of a list): item is the entry, key its name; each entry that fails is a "
        "violation at its own path (null: once, for the whole manifest).",
        pattern=r"^(manifest|live|routes)(\.|\[).+$",
    )
    message: str | None = setting(
        None, doc='What a violation says: a CEL expression giving a string, e.g. "tenant " + key + " is too big".'
    )
    mode: Literal["audit", "warn", "enforce"] | None = setting(
        None, doc=f"This rule's mode in every environment: {_MODE_DOC} (null: policies.mode)."
    )
    severity: Literal["low", "medium", "high", "critical"] = setting("medium", doc="How bad a violation is.")
    remediation: str = setting("", doc="What to do about a violation (shown with it, and in its alert).")
    runbook: str = setting("", doc="A page that explains the rule (empty: docs/runbooks/policies.md).")

    def check(self) -> Iterator[tuple[str, str]]:
        from mesh.policy import rule_problems  # here: mesh.policy reads this model

        yield from rule_problems(self)


@dataclass(frozen=True)
class PolicyOverride:
    """A built-in rule, in this mesh: its mode, or off."""

    mode: Literal["audit", "warn", "enforce"] | None = setting(
        None,
        doc="The rule's mode here, whatever the preset's default and policies.mode (null: the lesser of those).",
    )
    enabled: bool = setting(True, doc="false: the rule is not evaluated at all.")


@dataclass(frozen=True)
class Policies:
    """Policies over the manifest and the live mesh: the built-in rules and your own, each in a
    mode per environment (`mesh.policy`, docs/policies.md)."""

    mode: Literal["audit", "warn", "enforce"] = setting(
        "audit",
        doc=f"The most a rule does when it is violated, unless it names its own mode: {_MODE_DOC}. A built-in "
        "rule runs in the lesser of this and its default for the preset (`tidemesh config policy --rules`).",
        tradeoff="enforce blocks dangerous changes but also urgent ones; audit only records.",
    )
    rules: tuple[PolicyRule, ...] = setting(
        (), doc="Policy rules of your own, checked when the manifest is read (a bad expression names its path)."
    )
    overrides: dict[str, PolicyOverride] = setting(
        default_factory=dict,
        doc="Built-in rules by name (max-retries, tls-outside-dev, tenant-quota, allowed-kinds-known, "
        "kind-pool-bindings, gpu-caps, durability-replicas): set one's mode, or turn it off.",
        key_pattern=TOKEN_PATTERN,
    )
    watch_seconds: float = setting(
        30.0,
        doc="How often `tidemesh up` evaluates the policies against the running mesh; each new violation "
        "(and its clearing) is an alert on tm.alert.policy.<rule>.",
        minimum=1,
        tradeoff="Shorter notices a live figure sooner; each evaluation reads the work and dead-letter streams.",
    )

    def check(self) -> Iterator[tuple[str, str]]:
        from mesh.policy import policies_problems  # here: mesh.policy reads this model

        yield from policies_problems(self)


@dataclass(frozen=True)
class Role:
    """A role of your own: the actions it grants, optionally only in some tenants (`mesh.access`)."""

    permissions: tuple[str, ...] = setting(
        doc="Actions the role grants, e.g. task.read, dlq.replay (`tidemesh auth roles` lists them).",
        required=True,
        pattern=ACTION_PATTERN,
    )
    tenants: tuple[str, ...] | None = setting(
        None,
        doc="The only tenants it acts in (null: its credential's tenant; a credential for every tenant, '*', "
        "may hold it only if it lists them or grants no action on tenants).",
        pattern=TOKEN_PATTERN,
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.permissions:
            yield "permissions", "a role grants at least one action"
        for index, action in enumerate(self.permissions):
            if action not in BY_NAME:
                yield f"permissions[{index}]", unknown_action(action)
        if self.tenants is not None and not self.tenants:
            yield "tenants", "list one or more tenants (null: no limit)"


@dataclass(frozen=True)
class Tracing:
    """Spans that leave the mesh over OTLP (an OpenTelemetry Collector, Jaeger, Tempo)."""

    otlp_endpoint: str = setting(
        "",
        doc="Where every process sends its spans (`--otlp`): HOST:PORT (plaintext, e.g. localhost:4317), "
        "http://HOST:PORT or https://HOST:PORT; empty: spans stay in the mesh (the trace context still travels "
        "and reaches the logs).",
        pattern=r"^((https?://)?[A-Za-z0-9.\[\]:_-]+(:[0-9]{1,5})?(/\S*)?)?$",
        tradeoff="Full spans cost CPU on every hop; the collector sees each task's whole trace.",
    )
    otlp_protocol: Literal["grpc", "http/protobuf"] = setting(
        "grpc", doc="OTLP over gRPC (port 4317) or HTTP with protobuf bodies (port 4318) (`--otlp-protocol`)."
    )
    sampling_ratio: float = setting(
        1.0,
        doc="The share of tasks whose traces are kept, decided at the first hop (`--trace-sampling`); a failing, "
        "retried or dead-lettered attempt is kept whatever the ratio.",
        minimum=0,
        maximum=1,
        tradeoff="Lower costs the collector less; a task outside the sample leaves only its failures.",
    )


@dataclass(frozen=True)
class Observability:
    """What the mesh tells the monitoring it runs beside."""

    tracing: Tracing = setting(default_factory=Tracing, doc="Traces over OTLP.")


@dataclass(frozen=True)
class Experiments:
    """Switches for experiments only; no preset sets them."""

    insecure: bool = setting(
        False,
        doc="EXPERIMENTS ONLY (`--insecure`): plaintext on every hop, NATS without users, internal ports open "
        "to the host.",
        tradeoff="Lets a packet capture read the traffic; never for real work or real data.",
    )


@dataclass(frozen=True)
class Manifest:
    """A tidemesh mesh's desired state (tidemesh.yaml)."""

    api_version: Literal["tidemesh.dev/v1alpha1"] = setting(
        API_VERSION, doc="The manifest format's version.", required=True
    )
    kind: Literal["Mesh"] = setting(KIND, doc="What the document describes.", required=True)
    metadata: Metadata = setting(
        default_factory=Metadata, doc="Names the mesh goes by (in revisions and audit records)."
    )
    preset: Literal["dev", "staging", "prod"] | None = setting(
        None,
        doc="A preset the document overlays (`tidemesh config presets`): the fields given here override it.",
    )
    state_dir: str = setting(
        "state", doc="Where the mesh keeps its JetStream store, PKI, credentials and logs (`--state-dir`)."
    )
    demo: bool = setting(False, doc="Run the demo tasks once healthy (`--demo`, what `make run` does).")
    pools: Pools = setting(
        default_factory=Pools, doc="Worker processes: the general ones and each pool's dedicated ones."
    )
    classes: Classes = setting(default_factory=Classes, doc="Priority classes and their lanes.")
    tenants: Tenants = setting(
        default_factory=Tenants, doc="Tenants: every tenant's limits and the named ones' weights and caps."
    )
    kinds: dict[str, KindSpec] = setting(
        default_factory=dict,
        doc="Task kinds of your own, by name, and their routing: registered by `tidemesh up -f` and "
        "`tidemesh config apply` (their input and output types must be registered schemas; a registered kind "
        "is never changed or removed by a manifest — a changed one is refused, naming it).",
        key_pattern=KIND_PATTERN,
    )
    endpoints: Endpoints = setting(default_factory=Endpoints, doc="Where the mesh is reached.")
    egress: Egress = setting(default_factory=Egress, doc="Where tasks may call out of the mesh.")
    inference: Inference = setting(
        default_factory=Inference, doc="The inference service: replicas, backends, batching, memory, spill bounds."
    )
    durability: Durability = setting(
        default_factory=Durability, doc="What an acknowledged write survives: fsync, replicas, redelivery, retention."
    )
    observability: Observability = setting(
        default_factory=Observability, doc="What the mesh tells the monitoring it runs beside (traces over OTLP)."
    )
    policies: Policies = setting(
        default_factory=Policies,
        doc="Policies over the manifest and the live mesh: built-in rules and your own, audit, warn or enforce.",
    )
    roles: dict[str, Role] = setting(
        default_factory=dict,
        doc="Roles of your own, by name, beside the built-in ones (viewer, submitter, operator, tenant-admin, "
        "policy-admin, auditor, worker, admin); API keys and tokens name them like built-in ones.",
        key_pattern=TOKEN_PATTERN,
    )
    experiments: Experiments = setting(
        default_factory=Experiments, doc="Switches for experiments only; no preset sets them."
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if self.durability.cluster.hosts:
            if self.endpoints.public.port == 0:
                yield "endpoints.public.port", "0 picks free ports on each host, which the other hosts cannot know"
            if self.experiments.insecure:
                yield "experiments.insecure", "a mesh over several hosts runs secure only"
        for name in self.roles:
            if name in BUILTIN_NAMES or name in ALIASES:
                yield f"roles.{name}", f"{name!r} is a built-in role (or its alias): choose another name"
        from mesh.policy import manifest_problems  # here: mesh.policy reads this model

        yield from manifest_problems(self)  # a rule of its own that cannot be evaluated on it


def declared_only(data: dict[str, Any], base: dict[str, Any] | None = None) -> list[str]:
    """The declared-only fields (see `Meta.enforced`) that `data` — an encoded manifest — sets
    away from `base` (default: the defaults), by path."""
    from mesh.manifest._fields import diff, encode, matches, path_of, split_path, walk

    changed = [change.path for change in diff(encode(Manifest()) if base is None else base, data)]
    unenforced = [f.path for f in walk(Manifest) if not f.meta.enforced]
    found: list[str] = []
    for path in changed:
        pattern = next((p for p in unenforced if matches(p, path)), None)
        if pattern is not None:
            field = path_of(split_path(path)[: len(split_path(pattern))])  # the field, not a part of its value
            if field not in found:
                found.append(field)
    return found
