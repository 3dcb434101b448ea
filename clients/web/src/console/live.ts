// The mesh's status, live, for the views that show it (overview, workers, inference): WatchMeshStatus
// (a snapshot on connect, then each change at most every 500 ms), reopened after a dropped
// connection, with a pause control that holds the display still.
import type { GetMeshStatusResponse } from "../gen/mesh/v1/gateway_pb.js";
import { describe, failure, gateway, refused } from "./api.js";
import { h } from "./dom.js";
import { trackStream } from "./session.js";
import { backoff, pause, type Shell, type View } from "./view.js";

const INTERVAL_MS = 500;

/** Renders `title` with a pause control and an "updated" line; `render` fills `body` on each status shown. */
export function liveStatus(
  main: HTMLElement,
  shell: Shell,
  title: string,
  render: (status: GetMeshStatusResponse, body: HTMLElement) => void,
): View {
  const stop = new AbortController();
  const updated = h("p", { class: "hint", id: "overview-updated" }, "Connecting…");
  const pauseButton = h("button", { type: "button", id: "pause-overview", "aria-pressed": "false" }, "Pause updates");
  const body = h("div", {});
  let paused = false;
  let latest: GetMeshStatusResponse | null = null;
  let shownAt = ""; // when the figures on screen arrived

  function show(status: GetMeshStatusResponse): void {
    render(status, body);
    const now = new Date();
    shownAt = now.toLocaleTimeString(undefined, { hour12: false });
    updated.textContent = `Live — updated ${shownAt}`;
    updated.dataset.updated = now.toISOString();
  }

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume updates" : "Pause updates";
    if (!paused && latest) show(latest);
    else if (paused) updated.textContent = `Paused — showing ${shownAt || "nothing yet"}; updates are held.`;
  });

  async function watch(): Promise<void> {
    const client = gateway();
    for (let attempt = 0; !stop.signal.aborted; attempt++) {
      const track = trackStream(); // a renewed credential moves onto this stream in-band
      try {
        const options = { signal: stop.signal, onHeader: track.onHeader };
        let first = true;
        for await (const reply of client.watchMeshStatus({ minIntervalMs: INTERVAL_MS }, options)) {
          attempt = 0;
          if (first) shell.connection("Connected"); // once per connection: the line may say something else meanwhile
          first = false;
          if (!reply.status) continue;
          latest = reply.status;
          if (!paused) show(reply.status);
        }
      } catch (caught) {
        if (stop.signal.aborted) return;
        const f = failure(caught);
        if (refused(f)) return shell.refused(f);
        updated.textContent = `Disconnected (${describe(f)}); reconnecting…`;
        shell.connection("Reconnecting…");
      } finally {
        track.release();
      }
      await pause(backoff(attempt), stop.signal);
    }
  }

  main.replaceChildren(h("h1", { tabindex: "-1" }, title), h("div", { class: "row" }, pauseButton, updated), body);
  void watch();
  return { title, dispose: () => stop.abort() };
}

/** Bytes as a short figure: 1.5 GiB, 320 MiB, … */
export function bytes(count: bigint): string {
  const value = Number(count);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let index = 0;
  let scaled = value;
  while (scaled >= 1024 && index < units.length - 1) {
    scaled /= 1024;
    index++;
  }
  return index ? `${scaled.toFixed(1)} ${units[index]}` : `${value} B`;
}
