// Inference backends, live: each instance's backend, address, circuit (a word: closed, open,
// half-open), the models it holds, streams and can load, load and queue, latency, memory, devices
// and its last error.
import type { GetMeshStatusResponse } from "../../gen/mesh/v1/gateway_pb.js";
import type { InferenceBackendStatus } from "../../gen/mesh/v1/status_pb.js";
import { circuitLabel, time } from "../api.js";
import { h, table } from "../dom.js";
import { bytes, liveStatus } from "../live.js";
import type { Shell, View } from "../view.js";

function devices(backend: InferenceBackendStatus): string {
  if (!backend.devices.length) return backend.devicesNote || "—";
  return backend.devices
    .map((d) => `${d.kind}${d.index} ${d.name} ${(d.utilization * 100).toFixed(0)} % · ${bytes(d.memoryUsedBytes)} / ${bytes(d.memoryTotalBytes)}`)
    .join("; ");
}

function render(status: GetMeshStatusResponse, body: HTMLElement): void {
  const rows = status.inferenceBackends.map((b) => [
    h("code", {}, b.instance),
    `${b.backend}${b.address ? ` at ${b.address}` : ""}`,
    circuitLabel(b.circuit),
    b.models.join(", ") || "—",
    b.streamingModels.join(", ") || "—",
    b.loadableModels.join(", ") || "—",
    `${b.inFlight} / ${b.capacity}${b.waiting ? ` (+${b.waiting} waiting)` : ""}`,
    b.latencyMs.toFixed(1),
    b.memoryBudgetBytes ? `${bytes(b.memoryResidentBytes)} / ${bytes(b.memoryBudgetBytes)}` : "—",
    devices(b),
    String(b.textsServed),
    String(b.failures),
    b.lastError || "—",
    time(b.updated),
  ]);
  body.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "backends-title" },
      h("h2", { id: "backends-title" }, `Inference backends (${status.inferenceBackends.length})`),
      table(
        "Inference backends",
        ["Instance", "Backend", "Circuit", "Models", "Streaming", "Loadable", "In flight", "Latency (ms)", "Memory", "Devices", "Served", "Failures", "Last error", "Updated"],
        rows,
        new Set([7, 10, 11]),
      ),
    ),
  );
}

export function inference(main: HTMLElement, shell: Shell): View {
  return liveStatus(main, shell, "Inference", render);
}
