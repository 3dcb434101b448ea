// Workers, live: each session's host and pid, pools, health (a word and a symbol), load, counts and
// last heartbeat; and per pool the scaler's recommendation (replicas now and wanted, and why).
import type { GetMeshStatusResponse } from "../../gen/mesh/v1/gateway_pb.js";
import { healthLabel, time } from "../api.js";
import { h, table } from "../dom.js";
import { liveStatus } from "../live.js";
import type { Shell, View } from "../view.js";

function render(status: GetMeshStatusResponse, body: HTMLElement): void {
  const workers = status.workers.map((w) => [
    h("code", {}, w.workerId),
    w.host ? `${w.host} (pid ${w.pid})` : "—",
    w.pools.join(", "),
    healthLabel(w.health),
    `${w.inFlight} / ${w.concurrency}`,
    String(w.completed),
    String(w.failed),
    time(w.lastHeartbeat),
  ]);
  const scaling = status.scaling.map((s) => [
    s.pool,
    String(s.currentReplicas),
    String(s.desiredReplicas),
    String(s.depth),
    s.oldestAgeS.toFixed(1),
    s.drainPerS.toFixed(1),
    s.reason || "—",
  ]);
  body.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "workers-title" },
      h("h2", { id: "workers-title" }, `Workers (${status.workers.length})`),
      table("Workers", ["Worker", "Host", "Pools", "Health", "In flight", "Completed", "Failed", "Last heartbeat"], workers, new Set([4, 5, 6])),
    ),
    h(
      "section",
      { "aria-labelledby": "scaling-title" },
      h("h2", { id: "scaling-title" }, "Scaling"),
      table(
        "Replicas per pool, as the scaler recommends",
        ["Pool", "Replicas", "Wanted", "Depth", "Oldest (s)", "Drain (/s)", "Why"],
        scaling,
        new Set([1, 2, 3, 4, 5]),
      ),
    ),
  );
}

export function workers(main: HTMLElement, shell: Shell): View {
  return liveStatus(main, shell, "Workers", render);
}
