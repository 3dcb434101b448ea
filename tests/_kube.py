"""A rendering's pods laid out on this machine as the kubelet would: each pod's projected Secret and
ConfigMap, filled the way `create-secrets.sh` fills them, then staged by the pod's own init step."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mesh.kube import Rendering
from mesh.kube._names import NATS_STORE, POD_STATE, RUN_DIR
from mesh.kube._stage import stage, write_envoy_sds


def script_sources(script: str) -> dict[tuple[str, str], str]:
    """(Secret, key) → the file create-secrets.sh reads for it (with $OUT / $STATE_DIR unexpanded)."""
    found = {}
    for block in script.split("create secret generic ")[1:]:
        name = block.split()[0]
        for key, source in re.findall(r'--from-file=([^=]+)="([^"]+)"', block):
            found[(name, key)] = source
    return found


def script_leaves(script: str) -> dict[str, list[str]]:
    """The leaves (component → host names) create-secrets.sh asks `mesh.kube credentials` for."""
    return {
        component: [h for h in hosts.split(",") if h]
        for component, hosts in re.findall(r"--leaf '?([a-z]+)=([^'\s\\]*)", script)
    }


def workload(rendering: Rendering, name: str) -> dict[str, Any]:
    return next(
        o for o in rendering.objects if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name
    )


def materialise(rendering: Rendering, name: str, state: Path, namespace: str, into: Path) -> Path:
    """Pod `name`'s state dir, staged under `into` from the state dir `state` the script filled."""
    out = state / "kubernetes" / namespace
    sources = script_sources(rendering.script)
    maps = {o["metadata"]["name"]: o["data"] for o in rendering.objects if o["kind"] == "ConfigMap"}
    pod = workload(rendering, name)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "source"]
    source, staged = into / "source", into / "state"
    for entry in volume["projected"]["sources"]:
        for item in (entry.get("secret") or entry["configMap"])["items"]:
            path = source / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            if "secret" in entry:
                given = sources[(entry["secret"]["name"], item["key"])]
                path.write_bytes(Path(given.replace("$OUT", str(out)).replace("$STATE_DIR", str(state))).read_bytes())
            else:
                path.write_text(maps[entry["configMap"]["name"]][item["key"]])
    stage(source, staged)
    if "--envoy-sds" in pod["initContainers"][0]["command"]:
        write_envoy_sds(staged)
    return staged


def localise(text: str, staged: Path, scratch: Path, addresses: dict[str, str] | None = None) -> str:
    """A pod's file or argument with its pod paths (and any in-cluster `addresses`) made local."""
    text = text.replace(POD_STATE, str(staged)).replace(RUN_DIR, str(scratch)).replace(NATS_STORE, str(scratch / "js"))
    for cluster, local in (addresses or {}).items():
        text = text.replace(cluster, local)
    return text
