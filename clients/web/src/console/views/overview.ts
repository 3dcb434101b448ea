// The mesh at a glance, live: WatchMeshStatus (a snapshot on connect, then each change at most
// every 500 ms), reopened after a dropped connection; a pause control holds the display still.
import type { GetMeshStatusResponse } from "../../gen/mesh/v1/gateway_pb.js";
import { className, describe, failure, gateway, healthLabel, refused, time } from "../api.js";
import { h, table } from "../dom.js";
import { backoff, pause, type Shell, type View } from "../view.js";

const INTERVAL_MS = 500;

export function overview(main: HTMLElement, shell: Shell): View {
  const stop = new AbortController();
  const updated = h("p", { class: "hint", id: "overview-updated" }, "Connecting…");
  const pauseButton = h("button", { type: "button", id: "pause-overview", "aria-pressed": "false" }, "Pause updates");
  const queues = h("section", { "aria-labelledby": "queues-title" });
  const workers = h("section", { "aria-labelledby": "workers-title" });
  const backends = h("section", { "aria-labelledby": "backends-title" });
  let paused = false;
  let latest: GetMeshStatusResponse | null = null;
  let shownAt = ""; // when the figures on screen arrived

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume updates" : "Pause updates";
    if (!paused && latest) render(latest);
    else if (paused) updated.textContent = `Paused — showing ${shownAt || "nothing yet"}; updates are held.`;
  });

  function render(status: GetMeshStatusResponse): void {
    const drain = new Map(status.scaling.map((s) => [s.pool, s.drainPerS]));
    const queueRows = status.queues.map((q) => {
      const row = [
        q.pool,
        className(q.priorityClass),
        String(q.pending),
        String(q.inFlight),
        q.oldestAgeS.toFixed(1),
        (drain.get(q.pool) ?? 0).toFixed(1),
      ];
      return row;
    });
    queues.replaceChildren(
      h("h2", { id: "queues-title" }, "Queues"),
      table("Queue depth per pool and class", ["Pool", "Class", "Pending", "In flight", "Oldest (s)", "Drain (/s)"], queueRows, new Set([2, 3, 4, 5])),
    );
    const workerRows = status.workers.map((w) => [
      h("code", {}, w.workerId),
      w.pools.join(", "),
      healthLabel(w.health),
      `${w.inFlight} / ${w.concurrency}`,
      String(w.completed),
      String(w.failed),
      time(w.lastHeartbeat),
    ]);
    workers.replaceChildren(
      h("h2", { id: "workers-title" }, "Workers"),
      table("Workers", ["Worker", "Pools", "Health", "In flight", "Completed", "Failed", "Last heartbeat"], workerRows, new Set([3, 4, 5])),
    );
    const backendRows = status.inferenceBackends.map((b) => [
      h("code", {}, b.instance),
      b.backend,
      b.circuit || "—",
      b.models.join(", ") || "—",
      `${b.inFlight} / ${b.capacity}`,
      b.latencyMs.toFixed(1),
      String(b.textsServed),
      String(b.failures),
    ]);
    backends.replaceChildren(
      h("h2", { id: "backends-title" }, "Inference backends"),
      table(
        "Inference backends",
        ["Instance", "Backend", "Circuit", "Models", "In flight", "Latency (ms)", "Texts served", "Failures"],
        backendRows,
        new Set([4, 5, 6, 7]),
      ),
    );
    const now = new Date();
    shownAt = now.toLocaleTimeString(undefined, { hour12: false });
    updated.textContent = `Live — updated ${shownAt}`;
    updated.dataset.updated = now.toISOString();
  }

  async function watch(): Promise<void> {
    const client = gateway();
    for (let attempt = 0; !stop.signal.aborted; attempt++) {
      try {
        for await (const reply of client.watchMeshStatus({ minIntervalMs: INTERVAL_MS }, { signal: stop.signal })) {
          attempt = 0;
          shell.connection("Connected");
          if (!reply.status) continue;
          latest = reply.status;
          if (!paused) render(reply.status);
        }
      } catch (caught) {
        if (stop.signal.aborted) return;
        const f = failure(caught);
        if (refused(f)) return shell.refused(f);
        updated.textContent = `Disconnected (${describe(f)}); reconnecting…`;
        shell.connection("Reconnecting…");
      }
      await pause(backoff(attempt), stop.signal);
    }
  }

  main.replaceChildren(
    h("h1", { tabindex: "-1" }, "Overview"),
    h("div", { class: "row" }, pauseButton, updated),
    queues,
    workers,
    backends,
  );
  void watch();
  return { title: "Overview", dispose: () => stop.abort() };
}
