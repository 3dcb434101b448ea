"""What `tidemesh init` asks and what it makes of the answers. Pure: no terminal, no files.

Every question has a stable key (the answers file's), a default that may depend on the answers
before it, and the manifest fields it feeds (so an answer the manifest loader refuses is named by
key and field, and asked again). `design` turns a full set of answers into a manifest document
and one line per derived field saying why:

    environment → the preset          durability → fsync and the cluster's nodes
    workload    → the pool and class  rate x service time, latency target → slots, workers,
    gpu         → Triton on the GPU                                        the class's wait bound
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from statistics import NormalDist
from typing import Any

from mesh.capacity import MMc
from mesh.manifest import API_VERSION, KIND, PRESETS, Issue, Manifest, ManifestError, matches, merge, resolve

Answers = dict[str, Any]


# The workload shapes: the pool their steps run in, their usual class, and typical figures.
@dataclass(frozen=True)
class Shape:
    name: str
    summary: str
    pool: str
    priority_class: str
    service_s: float  # a typical step (median)
    latency_s: float  # a typical p95 target (queue wait + one step)


SHAPES = {
    s.name: s
    for s in (
        Shape("interactive", "request/response: a person waits for each answer", "ingestion", "interactive", 0.05, 0.5),
        Shape("streaming", "results streamed as they come (tokens, chunks, progress)", "post-processing",
              "interactive", 0.2, 2.0),
        Shape("batch", "batches and pipelines nobody waits on", "ingestion", "batch", 2.0, 120.0),
        Shape("inference", "inference-heavy: most steps call a model", "inference", "standard", 0.1, 1.0),
    )
}  # fmt: skip
DURABILITY = {
    "dev": ("interval", 1, "a crash may lose the last two minutes of acknowledged writes: fine for work you resubmit"),
    "crash": ("always", 1, "every acknowledged write is on disk before it is acknowledged: a process crash loses none"),
    "host": ("always", 3, "three nodes, every stream R3, fsync always: a host can die without losing a write"),
}
DURABILITY_SUMMARY = {
    "dev": "development: fast, a crash may lose recent work",
    "crash": "survive a process crash (fsync always, one node)",
    "host": "survive a host's loss (fsync always, an R3 cluster of three nodes)",
}
CLASSES = ("interactive", "standard", "batch")  # most urgent first
HEADROOM = 0.75  # the busy share of the slots sizing aims at: the rest absorbs bursts
MAX_SLOTS = 100_000
_Z95 = NormalDist().inv_cdf(0.95)


class AnswerError(ValueError):
    """An answer that cannot be used; `key` names the question, `field` the manifest field if any."""

    def __init__(self, key: str, message: str, field: str = "") -> None:
        self.key, self.message, self.field = key, message, field
        super().__init__(f"{key} ({field}): {message}" if field else f"{key}: {message}")


# -- parsing answers (text as typed, or a value from an answers file) ---------------------------


def _number(text: str, *, integer: bool = False, positive: bool = True) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ValueError(f"expected {'a whole number' if integer else 'a number'}, got {text!r}") from None
    if not math.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(f"must be {'> 0' if positive else '≥ 0'}, got {text}")
    return value


def _yes_no(text: str) -> bool:
    word = text.strip().lower()
    if word in ("y", "yes", "true", "1"):
        return True
    if word in ("n", "no", "false", "0"):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _none(text: str) -> bool:
    return text.strip().lower() in ("", "none", "null", "no", "-")


def _optional_int(text: str) -> int | None:
    return None if _none(text) else int(_number(text, integer=True))


def _mapping(text: str, names: Sequence[str] | None, shape: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, value = entry.partition("=")
        name = name.strip()
        if not sep or not name or (names is not None and name not in names):
            within = f" with NAME one of {', '.join(names)}" if names is not None else ""
            raise ValueError(f"expected {shape}{within}, got {entry!r}")
        out[name] = _number(value.strip())
    return out


def _autoscale(text: str) -> dict[str, int] | None:
    if _none(text):
        return None
    low, sep, high = text.partition(":")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"expected MIN:MAX (e.g. 1:4) or none, got {text!r}")
    return {"min": int(low), "max": int(high)}


def _secret_ref(text: str) -> dict[str, str] | None:
    """A reference to a secret, never its value: the value typed is never repeated back."""
    if _none(text):
        return None
    scheme, sep, where = text.strip().partition(":")
    if sep and where and scheme == "file":
        return {"fromFile": where}
    if sep and where and scheme == "env" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", where):
        return {"fromEnv": where}
    raise ValueError(
        "give a reference, file:PATH or env:NAME (or none), never the secret itself (what was given is not shown)"
    )


def _text(value: Any) -> str:
    """An answers file's value as it would be typed (a mapping as NAME=VALUE,…, a list with commas)."""
    if value is None or (isinstance(value, Mapping | list | tuple | str) and not value):
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        if set(value) <= {"min", "max"} and len(value) == 2:
            return f"{value['min']}:{value['max']}"
        if set(value) == {"fromFile"}:
            return f"file:{value['fromFile']}"
        if set(value) == {"fromEnv"}:
            return f"env:{value['fromEnv']}"
        return ",".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- the questions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    key: str
    text: str  # what is asked
    parse: Callable[[str], Any]  # ValueError with the message for a bad answer
    default: Callable[[Answers], Any]
    paths: tuple[str, ...] = ()  # manifest fields the answer feeds (patterns; under them too)
    choices: Mapping[str, str] = field(default_factory=dict)  # name → what it means
    advanced: bool = False
    applies: Callable[[Answers], bool] = lambda answers: True
    check: Callable[[Any, Answers], str | None] = lambda value, answers: None  # across answers
    note: str = ""  # said beside the question

    def read(self, text: str) -> Any:
        """The answer `text` means (a choice by name or number); AnswerError naming the key."""
        text = text.strip()
        if self.choices:
            names = list(self.choices)
            if text.isdigit() and 1 <= int(text) <= len(names):
                text = names[int(text) - 1]
            if text not in self.choices:
                raise AnswerError(self.key, f"expected one of {', '.join(names)}, got {text!r}")
            return text
        try:
            return self.parse(text)
        except ValueError as exc:
            raise AnswerError(self.key, str(exc)) from None

    def show(self, value: Any) -> str:
        return _text(value)

    def asking(self, answers: Answers) -> str:
        """What is asked, with the pool the answers so far pick."""
        return self.text.format(pool=_pool(answers))


def _preset(answers: Answers) -> Manifest:
    return _preset_manifest(value_of("environment", answers))


@cache
def _preset_manifest(name: str) -> Manifest:
    return resolve({"apiVersion": API_VERSION, "kind": KIND, "preset": name}, f"preset {name}")


def _shape(answers: Answers) -> Shape:
    return SHAPES[value_of("workload", answers)]


def _pool(answers: Answers) -> str:
    return _shape(answers).pool


def _check_latency(target: float, answers: Answers) -> str | None:
    p95 = value_of("service_time_p95", answers)
    if target <= p95:
        return f"must be above one step's own p95 ({p95:g} s): no number of workers meets {target:g} s"
    return None


def _check_p95(p95: float, answers: Answers) -> str | None:
    median = value_of("service_time", answers)
    if p95 < median:
        return f"must be at least the typical service time ({median:g} s), got {p95:g}"
    return _check_latency(value_of("latency_p95", answers), {**answers, "service_time_p95": p95})


def _yes(answers: Answers, key: str) -> bool:
    return bool(value_of(key, answers))


QUESTIONS: tuple[Question, ...] = (
    Question(
        "environment",
        "Where will this mesh run?",
        str,
        lambda a: "dev",
        ("preset",),
        choices={name: preset.summary for name, preset in PRESETS.items()},
    ),
    Question(
        "workload",
        "What shape is the work?",
        str,
        lambda a: "interactive",
        ("pools",),
        choices={s.name: s.summary for s in SHAPES.values()},
    ),
    Question("rate", "Expected rate at the busy hour, tasks per second", _number, lambda a: 10.0),
    Question(
        "service_time",
        "Typical time one step runs, seconds (its run, not its wait)",
        _number,
        lambda a: _shape(a).service_s,
    ),
    Question(
        "latency_p95",
        "Latency target: p95 seconds from submit to a step's end (queue wait + the step)",
        _number,
        lambda a: max(_shape(a).latency_s, 4 * value_of("service_time", a)),
        check=_check_latency,
    ),
    Question(
        "durability",
        "What must an acknowledged task survive?",
        str,
        lambda a: "dev" if value_of("environment", a) == "dev" else "host",
        ("durability",),
        choices=DURABILITY_SUMMARY,
    ),
    Question("gpu", "Will models run on a GPU?", _yes_no, lambda a: False, ("inference.triton",)),
    Question("advanced", "Configure advanced settings?", _yes_no, lambda a: False),
    # -- advanced: defaults are what the answers above derive --
    Question(
        "priority_class",
        "Which priority class does this traffic run in?",
        str,
        lambda a: _shape(a).priority_class,
        ("classes",),
        choices={
            "interactive": "a person is waiting",
            "standard": "someone expects it soon",
            "batch": "nobody waits on it",
        },
        advanced=True,
    ),
    Question(
        "service_time_p95",
        "p95 time one step runs, seconds (its slow end)",
        _number,
        lambda a: 2 * value_of("service_time", a),
        advanced=True,
        check=_check_p95,
    ),
    Question(
        "general_workers",
        "General worker processes (they serve every pool)",
        lambda t: int(_number(t, integer=True, positive=False)),
        lambda a: _preset(a).pools.general.workers,
        ("pools.general.workers",),
        advanced=True,
    ),
    Question(
        "pool_concurrency",
        "Steps one dedicated worker of the {pool} pool runs at once",
        lambda t: int(_number(t, integer=True)),
        lambda a: _preset(a).pools.by_name()[_pool(a)].concurrency,
        ("pools.*.concurrency",),
        advanced=True,
    ),
    Question(
        "pool_workers",
        "Dedicated workers of the {pool} pool (beside the general ones)",
        lambda t: int(_number(t, integer=True, positive=False)),
        lambda a: sizing(a).pool_workers,
        ("pools.*.workers",),
        advanced=True,
    ),
    Question(
        "autoscale",
        "Scale the {pool} pool's dedicated workers within MIN:MAX (or none)",
        _autoscale,
        lambda a: None,
        ("pools.*.autoscale",),
        advanced=True,
    ),
    Question(
        "memory_mb",
        "Memory cap per worker of the {pool} pool, MiB (or none)",
        _optional_int,
        lambda a: _preset(a).pools.by_name()[_pool(a)].caps.memory_mb,
        ("pools.*.caps.memoryMb",),
        advanced=True,
    ),
    Question(
        "gpu_memory_mb",
        "GPU memory cap per worker of the {pool} pool, MiB (or none)",
        _optional_int,
        lambda a: None,
        ("pools.*.caps.gpuMemoryMb",),
        advanced=True,
        applies=lambda a: _yes(a, "gpu"),
    ),
    Question(
        "wait_bounds",
        "Wait bound per class, seconds (CLASS=S,…)",
        lambda t: _mapping(t, CLASSES, "CLASS=SECONDS"),
        lambda a: {name: bound for name, (bound, _why) in derived_bounds(a).items()},
        ("classes",),
        advanced=True,
    ),
    Question(
        "tenants",
        "Named tenants and their fair-share weights (NAME=WEIGHT,…, or none)",
        lambda t: {} if _none(t) else _mapping(t, None, "NAME=WEIGHT"),
        lambda a: {},
        ("tenants.named",),
        advanced=True,
    ),
    Question(
        "tenant_quota",
        "Items one tenant may hold queued or running (its quota)",
        lambda t: int(_number(t, integer=True)),
        lambda a: _preset(a).tenants.defaults.max_queued,
        ("tenants.defaults.maxQueued",),
        advanced=True,
    ),
    Question(
        "tenant_rate",
        "Submits per second one tenant may make, per gateway (0: no limit)",
        lambda t: _number(t, positive=False),
        lambda a: limits(a)[0],
        ("tenants.defaults.submitsPerSecond", "tenants.defaults.submitBurst"),
        advanced=True,
    ),
    Question(
        "port",
        "The public port (0: pick a free one)",
        lambda t: int(_number(t, integer=True, positive=False)),
        lambda a: 8080,
        ("endpoints.public.port",),
        advanced=True,
    ),
    Question(
        "host",
        "The address the public port listens on (127.0.0.1: this host only; 0.0.0.0: the network)",
        str,
        lambda a: _preset(a).endpoints.public.host,
        ("endpoints.public.host",),
        advanced=True,
        note="TLS is always on, with the mesh's own CA (`tidemesh ca`): nothing to choose",
    ),
    Question(
        "cors_origins",
        "Browser origins allowed to call (comma-separated; * for any)",
        lambda t: [] if _none(t) else [o.strip() for o in t.split(",") if o.strip()],
        lambda a: ["*"],
        ("endpoints.public.cors",),
        advanced=True,
    ),
    Question(
        "step_up",
        "Ask a second factor (TOTP) for purges, audit exports and admin keys?",
        str,
        lambda a: _preset(a).endpoints.public.auth.step_up,
        ("endpoints.public.auth.stepUp",),
        choices={"off": "a credential alone is enough", "required": "a fresh code from an authenticator app"},
        advanced=True,
    ),
    Question(
        "jwt_secret",
        "Where the JWT signing secret lives: file:PATH or env:NAME (none: the mesh generates one)",
        _secret_ref,
        lambda a: None,
        ("endpoints.public.auth.jwtSecret",),
        advanced=True,
        note="a reference only: the secret itself never goes in the manifest",
    ),
    Question(
        "otlp_endpoint",
        "Where spans go over OTLP (e.g. http://localhost:4317; none: they stay in the mesh)",
        lambda t: "" if _none(t) else t.strip(),
        lambda a: "",
        ("observability.tracing.otlpEndpoint",),
        advanced=True,
    ),
    Question(
        "trace_sampling",
        "Share of tasks traced (0-1)",
        lambda t: _number(t, positive=False),
        lambda a: 1.0,
        ("observability.tracing.samplingRatio",),
        advanced=True,
        applies=lambda a: bool(value_of("otlp_endpoint", a)),
    ),
    Question("state_dir", "Where the mesh keeps its state", str, lambda a: "state", ("stateDir",), advanced=True),
    Question("name", "The mesh's name", str, lambda a: "tidemesh", ("metadata.name",), advanced=True),
)
BY_KEY = {q.key: q for q in QUESTIONS}


def value_of(key: str, answers: Answers) -> Any:
    """The answer to `key`: given, else its default (from the answers before it)."""
    return answers[key] if key in answers else BY_KEY[key].default(answers)


def asked(question: Question, answers: Answers) -> bool:
    """Whether `question` is asked after `answers` (the advanced ones only after a yes)."""
    if question.advanced and not value_of("advanced", answers):
        return False
    return question.applies(answers)


# -- what the answers make ----------------------------------------------------------------------


def service_samples(median_s: float, p95_s: float, count: int = 200) -> tuple[float, ...]:
    """Service times with that median and p95 (lognormal, its quantiles): constant if p95 = median."""
    if p95_s <= median_s:
        return (median_s,)
    sigma = math.log(p95_s / median_s) / _Z95
    normal = NormalDist()
    return tuple(median_s * math.exp(sigma * normal.inv_cdf((i + 0.5) / count)) for i in range(count))


@dataclass(frozen=True)
class Sizing:
    slots: int  # what the load needs
    mean_service_s: float
    general_slots: int
    pool_workers: int
    concurrency: int
    why: str


def slots_needed(rate: float, mean_s: float, p95_s: float, target_s: float) -> int:
    """Fewest slots at most `HEADROOM` busy whose p95 wait (M/M/c) plus a step's p95 meets the target."""
    slots = max(1, math.ceil(rate * mean_s / HEADROOM))
    while slots < MAX_SLOTS and MMc(rate, mean_s, slots).wait_quantile_s(0.95) + p95_s > target_s:
        slots += 1
    return slots


def sizing(answers: Answers) -> Sizing:
    rate, target = value_of("rate", answers), value_of("latency_p95", answers)
    median, p95 = value_of("service_time", answers), value_of("service_time_p95", answers)
    samples = service_samples(median, p95)
    mean = sum(samples) / len(samples)
    slots = slots_needed(rate, mean, p95, target)
    general = value_of("general_workers", answers) * _preset(answers).pools.general.concurrency
    concurrency = value_of("pool_concurrency", answers)
    busy = f"{rate:g}/s x {mean:.3g} s keeps {rate * mean:.3g} slots busy"
    if slots <= general:
        return Sizing(
            slots,
            mean,
            general,
            0,
            concurrency,
            f"{busy}; {slots} slots meet the p95 — the general workers' {general} cover it",
        )
    workers = math.ceil((slots - general) / concurrency)
    redundant = value_of("environment", answers) == "prod" and workers < 2
    if redundant:
        workers = 2  # one can restart while the other pulls
    return Sizing(
        slots,
        mean,
        general,
        workers,
        concurrency,
        f"{busy}; {slots} slots meet the p95 at ≤ {HEADROOM:.0%} busy: the general workers give {general}, "
        f"{workers} x {concurrency} the rest" + (" (at least 2 in prod: one can restart)" if redundant else ""),
    )


def derived_bounds(answers: Answers) -> dict[str, tuple[float, str]]:
    """Each class's wait bound: the preset's, the traffic's class's tightened to what its target
    leaves after a step (the more urgent classes kept at most that), with why."""
    lanes = _preset(answers).classes.lanes()
    bounds = {name: (lane.wait_bound_seconds, "") for name, lane in lanes.items()}
    klass = value_of("priority_class", answers)
    room = round(value_of("latency_p95", answers) - value_of("service_time_p95", answers), 6)
    if room < bounds[klass][0]:
        bounds[klass] = (room, f"your {value_of('latency_p95', answers):g} s target less a step's p95")
        for name in CLASSES[: CLASSES.index(klass)]:
            if bounds[name][0] > room:
                bounds[name] = (room, f"no looser than the {klass} bound, so the more urgent class stays first")
    return bounds


def limits(answers: Answers) -> tuple[float, float, str]:
    """(per-tenant submits/s, per-credential submits/s, why): the preset's, raised to 1.5x the rate
    where they would throttle it."""
    preset = _preset(answers)
    rate = value_of("rate", answers)
    wanted = float(math.ceil(1.5 * rate))
    tenant = preset.tenants.defaults.submits_per_second
    credential = preset.endpoints.public.limits.credential_submits_per_second
    raised = []
    if tenant and tenant < wanted:
        tenant = wanted
        raised.append("tenant")
    if credential and credential < wanted:
        credential = wanted
        raised.append("credential")
    why = f"1.5 x your {rate:g}/s, so one {' or one '.join(raised)} is not throttled at the busy hour" if raised else ""
    return tenant, credential, why


@dataclass(frozen=True)
class Derived:
    path: str
    value: Any
    why: str


@dataclass(frozen=True)
class Design:
    """What the answers make: the document, the derived fields and why, the load to preview."""

    document: dict[str, Any]
    derived: tuple[Derived, ...]
    pool: str
    priority_class: str
    rate: float
    service_s: float
    service_samples: tuple[float, ...]
    service_p95_s: float
    latency_target_s: float
    notes: tuple[str, ...]


def _nested(path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    nested: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        nested = {parent: nested}
    return nested


def design(answers: Answers) -> Design:
    """The manifest document and the reasons for every field the answers derive (missing answers:
    their defaults)."""
    a = answers
    environment, shape = value_of("environment", a), _shape(a)
    pool, klass = shape.pool, value_of("priority_class", a)
    fields: list[Derived] = [Derived("preset", environment, PRESETS[environment].summary)]

    def put(path: str, value: Any, why: str, key: str = "") -> None:
        fields.append(Derived(path, value, "your answer" if key and key in a else why))

    fsync, nodes, why = DURABILITY[value_of("durability", a)]
    put("durability.fsync", fsync, why)
    put("durability.cluster.nodes", nodes, why)
    size = sizing(a)
    if "general_workers" in a:
        put("pools.general.workers", a["general_workers"], "", "general_workers")
    put(f"pools.{pool}.workers", value_of("pool_workers", a), size.why, "pool_workers")
    if value_of("pool_workers", a):
        put(f"pools.{pool}.concurrency", size.concurrency, "the default: steps mostly wait on I/O", "pool_concurrency")
    if value_of("autoscale", a) is not None:
        put(f"pools.{pool}.autoscale", value_of("autoscale", a), "", "autoscale")
    if "memory_mb" in a:
        put(f"pools.{pool}.caps.memoryMb", a["memory_mb"], "", "memory_mb")
    if value_of("gpu", a):
        put("inference.triton.enabled", True, "models on a GPU are Triton's; the CPU model stays the fallback")
        put("inference.triton.devices", "gpu", "you said the models run on a GPU")
        if asked(BY_KEY["gpu_memory_mb"], a) and value_of("gpu_memory_mb", a) is not None:
            put(f"pools.{pool}.caps.gpuMemoryMb", value_of("gpu_memory_mb", a), "", "gpu_memory_mb")
    given = a.get("wait_bounds", {})
    for name, (bound, why) in derived_bounds(a).items():
        if name in given:
            put(f"classes.{name}.waitBoundSeconds", given[name], "", "wait_bounds")
        elif why:
            put(f"classes.{name}.waitBoundSeconds", bound, why)
    tenant_rate, credential_rate, why = limits(a)
    tenant_rate = value_of("tenant_rate", a)
    if why or "tenant_rate" in a:
        put("tenants.defaults.submitsPerSecond", tenant_rate, why, "tenant_rate")
        put("tenants.defaults.submitBurst", max(2 * tenant_rate, 1.0), "two seconds of a tenant's rate at once")
    if why:
        put("endpoints.public.limits.credentialSubmitsPerSecond", credential_rate, why)
        put("endpoints.public.limits.credentialBurst", 2 * credential_rate, "two seconds of a credential's rate")
    for name, weight in value_of("tenants", a).items():
        put(f"tenants.named.{name}.weight", weight, "", "tenants")
    simple = {
        "tenant_quota": "tenants.defaults.maxQueued",
        "port": "endpoints.public.port",
        "host": "endpoints.public.host",
        "cors_origins": "endpoints.public.cors.allowOrigins",
        "step_up": "endpoints.public.auth.stepUp",
        "jwt_secret": "endpoints.public.auth.jwtSecret",
        "otlp_endpoint": "observability.tracing.otlpEndpoint",
        "trace_sampling": "observability.tracing.samplingRatio",
        "state_dir": "stateDir",
        "name": "metadata.name",
    }
    for key, path in simple.items():
        if key in a and asked(BY_KEY[key], a):
            put(path, a[key], "", key)
    document: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND}
    for item in fields:
        document = merge(document, _nested(item.path, item.value))
    rate = value_of("rate", a)
    notes = []
    if shape.name == "inference":
        notes.append(
            "the preview models the workers' slots; a model's own throughput (batching, CPU threads, Triton) is "
            "not in it: `tidemesh config explain inference.batching.maxBatch`"
        )
    if rate > 200:
        notes.append(
            f"{rate:g} tasks/s: past about 200/s per two cores the mesh's own CPU is the limit, not the workers' "
            "slots (docs/performance.md)"
        )
    return Design(
        document,
        tuple(fields),
        pool,
        klass,
        rate,
        value_of("service_time", a),
        service_samples(value_of("service_time", a), value_of("service_time_p95", a)),
        value_of("service_time_p95", a),
        value_of("latency_p95", a),
        tuple(notes),
    )


def manifest_issues(question: Question, answers: Answers) -> list[Issue]:
    """What the manifest loader refuses in the fields `question` feeds, given `answers` so far."""
    try:
        resolve(design(answers).document, "the answers")
    except ManifestError as exc:
        return [i for i in exc.issues if any(matches(p, i.path) for p in question.paths)]
    return []


def accept(question: Question, value: Any, answers: Answers) -> None:
    """Check `value` for `question` against the answers before it and the manifest loader;
    AnswerError naming the key (and the field) otherwise."""
    problem = question.check(value, answers)
    if problem:
        raise AnswerError(question.key, problem)
    issues = manifest_issues(question, {**answers, question.key: value})
    if issues:
        raise AnswerError(question.key, issues[0].message, issues[0].path)
