"""The rendered Envoy bootstrap's browser contract: what a page may send, what it may read, and the
non-retryable answer to gRPC-Web's JSON codec (checked on the YAML itself, no Envoy or browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mesh.edge import EdgeConfig, render_yaml

CHECKED_IN = Path(__file__).resolve().parents[2] / "envoy" / "tidemesh.yaml"
# Everything the gateway answers that a browser script needs: the status and details of trailers-only
# errors, the stream id RefreshStreamCredential takes, the replica that answered.
MUST_EXPOSE = {
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "retry-after",
    "tidemesh-field",
    "tidemesh-error-class",
    "tidemesh-stream-id",
    "x-tidemesh-replica",
    # a step-up challenge: what it wants approved, and RFC 9470's WWW-Authenticate
    "tidemesh-step-up-action",
    "tidemesh-step-up-resource",
    "www-authenticate",
}
# What connect-web's gRPC-Web transport sends, both credential forms, SSE resume and the session header.
MUST_ALLOW = {
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    "x-api-key",
    "last-event-id",
    "x-tidemesh-session",
    "x-tidemesh-step-up",  # the step-up token a sensitive call brings
}


def _vhost(text: str) -> dict[str, Any]:
    bootstrap = yaml.safe_load(text)
    chain = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
    hcm = chain["filters"][0]["typed_config"]
    [vhost] = hcm["route_config"]["virtual_hosts"]
    return vhost


def _listed(value: str) -> set[str]:
    return {item.strip() for item in value.split(",")}


def test_cors_exposes_and_allows_what_a_browser_client_needs() -> None:
    """Both the default rendering and envoy/tidemesh.yaml expose the detail headers and allow x-api-key."""
    for text in (render_yaml(EdgeConfig()), CHECKED_IN.read_text()):
        policy = _vhost(text)["typed_per_filter_config"]["envoy.filters.http.cors"]
        assert MUST_EXPOSE <= _listed(policy["expose_headers"])
        assert MUST_ALLOW <= _listed(policy["allow_headers"])


def test_grpc_web_json_is_answered_before_the_grpc_route() -> None:
    """A grpc-web+json call gets a direct INVALID_ARGUMENT naming content-type instead of reaching the gRPC upstream."""
    routes = _vhost(render_yaml(EdgeConfig()))["routes"]
    names = [route["name"] for route in routes]
    json_routes = [route for route in routes if route["name"].startswith("grpc-web-json-unsupported")]
    assert json_routes and all(names.index(r["name"]) < names.index("grpc") for r in json_routes)
    for route in json_routes:
        assert route["direct_response"]["status"] == 200  # gRPC-Web's trailers-only form
        added = {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}
        assert added["grpc-status"] == "3" and added["tidemesh-field"] == "content-type"
        assert "application/grpc-web+proto" in added["grpc-message"]


def test_grpc_web_json_answer_echoes_only_allowed_origins() -> None:
    """With a fixed origin list the direct answer carries CORS headers only for requests from those origins."""
    routes = _vhost(render_yaml(EdgeConfig(cors_allow_origins=("https://app.example",))))["routes"]
    json_routes = [route for route in routes if route["name"].startswith("grpc-web-json-unsupported")]
    with_cors = [
        r
        for r in json_routes
        if any(h["header"]["key"] == "access-control-allow-origin" for h in r["response_headers_to_add"])
    ]
    assert len(with_cors) == 1
    origin_matchers = [h for h in with_cors[0]["match"]["headers"] if h["name"] == "origin"]
    assert origin_matchers == [{"name": "origin", "string_match": {"exact": "https://app.example"}}]
    fallback = json_routes[-1]
    assert [h["name"] for h in fallback["match"]["headers"]] == ["content-type"]
    assert all(h["header"]["key"] != "access-control-allow-origin" for h in fallback["response_headers_to_add"])
