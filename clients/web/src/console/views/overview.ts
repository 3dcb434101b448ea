// The mesh at a glance, live: queue depth per pool and class with the drain rate, workers and
// inference backends (each has a view of its own with more: /console/workers, /console/inference).
import type { GetMeshStatusResponse } from "../../gen/mesh/v1/gateway_pb.js";
import { circuitLabel, className, healthLabel, time } from "../api.js";
import { h, table } from "../dom.js";
import { liveStatus } from "../live.js";
import type { Shell, View } from "../view.js";

function render(status: GetMeshStatusResponse, body: HTMLElement): void {
  const drain = new Map(status.scaling.map((s) => [s.pool, s.drainPerS]));
  const queueRows = status.queues.map((q) => [
    q.pool,
    className(q.priorityClass),
    String(q.pending),
    String(q.inFlight),
    q.oldestAgeS.toFixed(1),
    (drain.get(q.pool) ?? 0).toFixed(1),
  ]);
  const workerRows = status.workers.map((w) => [
    h("code", {}, w.workerId),
    w.pools.join(", "),
    healthLabel(w.health),
    `${w.inFlight} / ${w.concurrency}`,
    String(w.completed),
    String(w.failed),
    time(w.lastHeartbeat),
  ]);
  const backendRows = status.inferenceBackends.map((b) => [
    h("code", {}, b.instance),
    b.backend,
    circuitLabel(b.circuit),
    b.models.join(", ") || "—",
    `${b.inFlight} / ${b.capacity}`,
    b.latencyMs.toFixed(1),
    String(b.textsServed),
    String(b.failures),
  ]);
  body.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "queues-title" },
      h("h2", { id: "queues-title" }, "Queues"),
      table("Queue depth per pool and class", ["Pool", "Class", "Pending", "In flight", "Oldest (s)", "Drain (/s)"], queueRows, new Set([2, 3, 4, 5])),
    ),
    h(
      "section",
      { "aria-labelledby": "workers-title" },
      h("h2", { id: "workers-title" }, "Workers"),
      table("Workers", ["Worker", "Pools", "Health", "In flight", "Completed", "Failed", "Last heartbeat"], workerRows, new Set([3, 4, 5])),
    ),
    h(
      "section",
      { "aria-labelledby": "backends-title" },
      h("h2", { id: "backends-title" }, "Inference backends"),
      table(
        "Inference backends",
        ["Instance", "Backend", "Circuit", "Models", "In flight", "Latency (ms)", "Texts served", "Failures"],
        backendRows,
        new Set([4, 5, 6, 7]),
      ),
    ),
  );
}

export function overview(main: HTMLElement, shell: Shell): View {
  return liveStatus(main, shell, "Overview", render);
}
