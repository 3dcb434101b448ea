"""The schema registry's bucket: one spelling, who may write and read it, and how a refusal travels."""

from __future__ import annotations

import grpc
import pytest

from mesh.rpc import status_of
from mesh.schemas import SCHEMAS_BUCKET, IncompatibleSchema, Violation
from mesh.security._nats import SCHEMAS_BUCKET as PERMITTED_BUCKET
from mesh.security._nats import permissions
from mesh.v1 import schema_pb2


def test_the_bucket_is_spelled_once() -> None:
    """The registry's bucket is the one the NATS permissions name."""
    assert SCHEMAS_BUCKET == PERMITTED_BUCKET == "tm_schemas"


def test_only_the_gateway_creates_and_writes_schemas() -> None:
    """The gateway declares and writes tm_schemas; no other service writes it or creates it."""
    gateway = permissions("gateway")
    assert gateway.may_publish(f"$JS.API.STREAM.CREATE.KV_{SCHEMAS_BUCKET}")
    assert gateway.may_publish(f"$KV.{SCHEMAS_BUCKET}.s.acme.v1.Req.1")
    assert gateway.may_publish(f"$JS.API.CONSUMER.CREATE.KV_{SCHEMAS_BUCKET}")  # listing subjects is a watch
    for component in ("scheduler", "worker", "inference", "supervisor"):
        grant = permissions(component)
        assert not grant.may_publish(f"$KV.{SCHEMAS_BUCKET}.s.acme.v1.Req.1"), component
        assert not grant.may_publish(f"$JS.API.STREAM.CREATE.KV_{SCHEMAS_BUCKET}"), component
        assert not grant.may_publish(f"$JS.API.STREAM.DELETE.KV_{SCHEMAS_BUCKET}"), component
        assert not grant.may_publish(f"$JS.API.STREAM.PURGE.KV_{SCHEMAS_BUCKET}"), component


@pytest.mark.parametrize("component", ["scheduler", "worker", "gateway"])
def test_the_scheduler_workers_and_gateway_read_schemas(component: str) -> None:
    """Reading a version (bucket info, a direct get by key) is granted where payloads are decoded."""
    grant = permissions(component)
    assert grant.may_publish(f"$JS.API.STREAM.INFO.KV_{SCHEMAS_BUCKET}")
    assert grant.may_publish(f"$JS.API.DIRECT.GET.KV_{SCHEMAS_BUCKET}.$KV.{SCHEMAS_BUCKET}.s.acme.v1.Req.1")


def test_an_incompatible_schema_is_failed_precondition_listing_every_violation() -> None:
    """The refusal is FAILED_PRECONDITION naming descriptor_set, its text one line per violation."""
    violations = [
        Violation("FIELD_SAME_TYPE", "acme.v1.Req.width", "int32 → int64", 1),
        Violation("FIELD_SAME_NAME", "acme.v1.Req.loose", "renamed", 1),
    ]
    refused = IncompatibleSchema("acme.v1.Req", schema_pb2.COMPATIBILITY_MODE_BACKWARD, violations)
    code, trailers = status_of(refused)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert ("tidemesh-field", "descriptor_set") in trailers
    assert refused.violations == violations
    assert "2 violations" in refused.message
    assert all(str(v) in refused.message for v in violations)
