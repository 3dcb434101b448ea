import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_HEALTH_UNSPECIFIED: _ClassVar[WorkerHealth]
    WORKER_HEALTH_ALIVE: _ClassVar[WorkerHealth]
    WORKER_HEALTH_DEAD: _ClassVar[WorkerHealth]
    WORKER_HEALTH_DRAINING: _ClassVar[WorkerHealth]
WORKER_HEALTH_UNSPECIFIED: WorkerHealth
WORKER_HEALTH_ALIVE: WorkerHealth
WORKER_HEALTH_DEAD: WorkerHealth
WORKER_HEALTH_DRAINING: WorkerHealth

class WorkerStatus(_message.Message):
    __slots__ = ("worker_id", "pools", "concurrency", "in_flight", "health", "last_heartbeat", "completed", "failed", "host", "pid")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    pools: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    in_flight: int
    health: WorkerHealth
    last_heartbeat: _timestamp_pb2.Timestamp
    completed: int
    failed: int
    host: str
    pid: int
    def __init__(self, worker_id: _Optional[str] = ..., pools: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., in_flight: _Optional[int] = ..., health: _Optional[_Union[WorkerHealth, str]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class QueueStatus(_message.Message):
    __slots__ = ("pool", "priority_class", "pending", "in_flight", "oldest_age_s", "tenant")
    POOL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    pool: str
    priority_class: _task_pb2.PriorityClass
    pending: int
    in_flight: int
    oldest_age_s: float
    tenant: str
    def __init__(self, pool: _Optional[str] = ..., priority_class: _Optional[_Union[_task_pb2.PriorityClass, str]] = ..., pending: _Optional[int] = ..., in_flight: _Optional[int] = ..., oldest_age_s: _Optional[float] = ..., tenant: _Optional[str] = ...) -> None: ...

class ScaleRecommendation(_message.Message):
    __slots__ = ("pool", "current_replicas", "desired_replicas", "depth", "oldest_age_s", "drain_per_s", "reason")
    POOL_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    DRAIN_PER_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    pool: str
    current_replicas: int
    desired_replicas: int
    depth: int
    oldest_age_s: float
    drain_per_s: float
    reason: str
    def __init__(self, pool: _Optional[str] = ..., current_replicas: _Optional[int] = ..., desired_replicas: _Optional[int] = ..., depth: _Optional[int] = ..., oldest_age_s: _Optional[float] = ..., drain_per_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class InferenceBackendStatus(_message.Message):
    __slots__ = ("instance", "backend", "address", "circuit", "models", "streaming_models", "capacity", "in_flight", "latency_ms", "texts_served", "failures", "last_error", "updated", "endpoint", "devices", "devices_note", "device_kinds", "waiting", "loadable_models", "memory_budget_bytes", "memory_resident_bytes", "model_statistics")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    STREAMING_MODELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TEXTS_SERVED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_NOTE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_KINDS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    LOADABLE_MODELS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    instance: str
    backend: str
    address: str
    circuit: str
    models: _containers.RepeatedScalarFieldContainer[str]
    streaming_models: _containers.RepeatedScalarFieldContainer[str]
    capacity: int
    in_flight: int
    latency_ms: float
    texts_served: int
    failures: int
    last_error: str
    updated: _timestamp_pb2.Timestamp
    endpoint: str
    devices: _containers.RepeatedCompositeFieldContainer[DeviceStatus]
    devices_note: str
    device_kinds: _containers.RepeatedScalarFieldContainer[str]
    waiting: int
    loadable_models: _containers.RepeatedScalarFieldContainer[str]
    memory_budget_bytes: int
    memory_resident_bytes: int
    model_statistics: _containers.RepeatedCompositeFieldContainer[ModelStatistics]
    def __init__(self, instance: _Optional[str] = ..., backend: _Optional[str] = ..., address: _Optional[str] = ..., circuit: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., streaming_models: _Optional[_Iterable[str]] = ..., capacity: _Optional[int] = ..., in_flight: _Optional[int] = ..., latency_ms: _Optional[float] = ..., texts_served: _Optional[int] = ..., failures: _Optional[int] = ..., last_error: _Optional[str] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., endpoint: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[DeviceStatus, _Mapping]]] = ..., devices_note: _Optional[str] = ..., device_kinds: _Optional[_Iterable[str]] = ..., waiting: _Optional[int] = ..., loadable_models: _Optional[_Iterable[str]] = ..., memory_budget_bytes: _Optional[int] = ..., memory_resident_bytes: _Optional[int] = ..., model_statistics: _Optional[_Iterable[_Union[ModelStatistics, _Mapping]]] = ...) -> None: ...

class ModelStatistics(_message.Message):
    __slots__ = ("model", "version", "inference_count", "execution_count", "success_count", "failure_count", "queue_ms_total", "compute_ms_total", "last_inference")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LAST_INFERENCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    inference_count: int
    execution_count: int
    success_count: int
    failure_count: int
    queue_ms_total: float
    compute_ms_total: float
    last_inference: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., inference_count: _Optional[int] = ..., execution_count: _Optional[int] = ..., success_count: _Optional[int] = ..., failure_count: _Optional[int] = ..., queue_ms_total: _Optional[float] = ..., compute_ms_total: _Optional[float] = ..., last_inference: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeviceStatus(_message.Message):
    __slots__ = ("kind", "index", "name", "utilization", "memory_used_bytes", "memory_total_bytes", "power_watts", "temperature_celsius")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    POWER_WATTS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_CELSIUS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    index: int
    name: str
    utilization: float
    memory_used_bytes: int
    memory_total_bytes: int
    power_watts: float
    temperature_celsius: float
    def __init__(self, kind: _Optional[str] = ..., index: _Optional[int] = ..., name: _Optional[str] = ..., utilization: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., power_watts: _Optional[float] = ..., temperature_celsius: _Optional[float] = ...) -> None: ...

class LoadSlice(_message.Message):
    __slots__ = ("pool", "priority_class", "arrived", "started", "first_started", "ended", "service_s_total", "service_s", "wait_s", "buffered", "running")
    POOL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    ARRIVED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FIRST_STARTED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    SERVICE_S_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SERVICE_S_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    pool: str
    priority_class: _task_pb2.PriorityClass
    arrived: int
    started: int
    first_started: int
    ended: int
    service_s_total: float
    service_s: _containers.RepeatedScalarFieldContainer[float]
    wait_s: _containers.RepeatedScalarFieldContainer[float]
    buffered: int
    running: int
    def __init__(self, pool: _Optional[str] = ..., priority_class: _Optional[_Union[_task_pb2.PriorityClass, str]] = ..., arrived: _Optional[int] = ..., started: _Optional[int] = ..., first_started: _Optional[int] = ..., ended: _Optional[int] = ..., service_s_total: _Optional[float] = ..., service_s: _Optional[_Iterable[float]] = ..., wait_s: _Optional[_Iterable[float]] = ..., buffered: _Optional[int] = ..., running: _Optional[int] = ...) -> None: ...

class PoolSlots(_message.Message):
    __slots__ = ("pool", "workers", "slots", "dedicated_workers", "dedicated_slots")
    POOL_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    pool: str
    workers: int
    slots: int
    dedicated_workers: int
    dedicated_slots: int
    def __init__(self, pool: _Optional[str] = ..., workers: _Optional[int] = ..., slots: _Optional[int] = ..., dedicated_workers: _Optional[int] = ..., dedicated_slots: _Optional[int] = ...) -> None: ...

class WorkerLoad(_message.Message):
    __slots__ = ("slices", "slots")
    SLICES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    slices: _containers.RepeatedCompositeFieldContainer[LoadSlice]
    slots: _containers.RepeatedCompositeFieldContainer[PoolSlots]
    def __init__(self, slices: _Optional[_Iterable[_Union[LoadSlice, _Mapping]]] = ..., slots: _Optional[_Iterable[_Union[PoolSlots, _Mapping]]] = ...) -> None: ...

class PoolClassLoad(_message.Message):
    __slots__ = ("pool", "priority_class", "arrival_per_s", "served_per_s", "service_s_samples", "service_mean_s", "wait_p50_s", "wait_p95_s", "depth", "pending", "in_flight", "running", "workers", "slots", "dedicated_workers", "dedicated_slots", "arrived", "served", "retried")
    POOL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_PER_S_FIELD_NUMBER: _ClassVar[int]
    SERVED_PER_S_FIELD_NUMBER: _ClassVar[int]
    SERVICE_S_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_MEAN_S_FIELD_NUMBER: _ClassVar[int]
    WAIT_P50_S_FIELD_NUMBER: _ClassVar[int]
    WAIT_P95_S_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    ARRIVED_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    RETRIED_FIELD_NUMBER: _ClassVar[int]
    pool: str
    priority_class: _task_pb2.PriorityClass
    arrival_per_s: float
    served_per_s: float
    service_s_samples: _containers.RepeatedScalarFieldContainer[float]
    service_mean_s: float
    wait_p50_s: float
    wait_p95_s: float
    depth: int
    pending: int
    in_flight: int
    running: int
    workers: int
    slots: int
    dedicated_workers: int
    dedicated_slots: int
    arrived: int
    served: int
    retried: int
    def __init__(self, pool: _Optional[str] = ..., priority_class: _Optional[_Union[_task_pb2.PriorityClass, str]] = ..., arrival_per_s: _Optional[float] = ..., served_per_s: _Optional[float] = ..., service_s_samples: _Optional[_Iterable[float]] = ..., service_mean_s: _Optional[float] = ..., wait_p50_s: _Optional[float] = ..., wait_p95_s: _Optional[float] = ..., depth: _Optional[int] = ..., pending: _Optional[int] = ..., in_flight: _Optional[int] = ..., running: _Optional[int] = ..., workers: _Optional[int] = ..., slots: _Optional[int] = ..., dedicated_workers: _Optional[int] = ..., dedicated_slots: _Optional[int] = ..., arrived: _Optional[int] = ..., served: _Optional[int] = ..., retried: _Optional[int] = ...) -> None: ...

class LoadReport(_message.Message):
    __slots__ = ("window_s", "measured_at", "loads")
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    LOADS_FIELD_NUMBER: _ClassVar[int]
    window_s: float
    measured_at: _timestamp_pb2.Timestamp
    loads: _containers.RepeatedCompositeFieldContainer[PoolClassLoad]
    def __init__(self, window_s: _Optional[float] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., loads: _Optional[_Iterable[_Union[PoolClassLoad, _Mapping]]] = ...) -> None: ...
