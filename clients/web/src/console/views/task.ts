// One task: its summary (GetTask), its event timeline and its partial outputs streaming in
// (WatchTask). A dropped stream is reopened with after_sequence = the last stored event seen, so
// nothing is missed or shown twice; the pause control closes the stream and resumes it the same way.
import { Code } from "@connectrpc/connect";
import { TaskState, type TaskEvent, type TaskInfo, type TaskOutput } from "../../gen/mesh/v1/task_pb.js";
import { className, describe, failure, gateway, refused, stateLabel, stateName, terminal, time, transient } from "../api.js";
import { confirm } from "../dialog.js";
import { h } from "../dom.js";
import { trackStream } from "../session.js";
import { backoff, pause, type Shell, type View } from "../view.js";
import { replay } from "./deadletter.js";

function outputText(output: TaskOutput | undefined): string | null {
  const body = output?.body;
  switch (body?.case) {
    case "text":
      return body.value;
    case "embedding":
      return `embedding (${body.value.model}, ${body.value.values.length} dimensions)`;
    case "data":
      return `${body.value.length} bytes`;
    case "custom":
      return body.value.typeUrl;
    case "tensors":
      return "tensors";
    default:
      return null;
  }
}

export function task(main: HTMLElement, shell: Shell, taskId: string): View {
  const stop = new AbortController();
  let streaming: AbortController | null = null;
  let paused = false;
  let done = false;
  let after = 0n; // the last stored event shown: a resume asks for what follows it
  const seen = new Set<string>(); // (sequence, live_index) of every event shown
  let outputs = 0;
  let previousState = -1;

  const summary = h("dl", { class: "summary", id: "task-summary" });
  const status = h("p", { id: "stream-status", role: "status" }, "Connecting…");
  const pauseButton = h("button", { type: "button", id: "pause-stream", "aria-pressed": "false" }, "Pause stream");
  const chunks = h("ol", {});
  const log = h(
    "div",
    { id: "task-output", class: "log", role: "log", "aria-live": "polite", "aria-busy": "true", "aria-labelledby": "output-title" },
    chunks,
  );
  const timeline = h("ol", { class: "timeline", id: "task-timeline" });
  const stateCell = h("dd", { id: "task-state" }, "—");
  const cancelButton = h("button", { type: "button", id: "cancel-task", class: "danger", hidden: true }, "Cancel task…");
  const retryButton = h("button", { type: "button", id: "retry-task", hidden: true }, "Retry (replay)…");
  const outcome = h("div", { id: "task-outcome", tabindex: "-1" });
  let kind = "";

  /** Cancel while the task can still stop; Retry once it is dead-lettered. */
  function actionsFor(state: TaskState): void {
    const focused = document.activeElement;
    cancelButton.hidden = state === TaskState.UNSPECIFIED || terminal(state);
    retryButton.hidden = state !== TaskState.DEAD_LETTERED;
    // Focus on a button that just went away would fall to the page's start: keep it at the outcome.
    if (focused instanceof HTMLElement && focused.hidden) outcome.focus();
  }

  cancelButton.addEventListener("click", async () => {
    const confirmed = await confirm(cancelButton, {
      title: `Cancel task ${taskId}?`,
      body: [
        h("p", {}, `This cancels the ${kind} task `, h("code", {}, taskId), " (now ", stateLabel(previousState), "): its worker stops it at the next check and it ends cancelled. Partial outputs already sent stay."),
      ],
      action: `Cancel ${taskId}`,
    });
    if (!confirmed) return;
    try {
      const reply = await gateway().cancelTask({ taskId, reason: "cancelled from the web console" });
      outcome.replaceChildren(h("p", { role: "status" }, "Cancel requested; the task is ", stateLabel(reply.state), "."));
    } catch (caught) {
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      outcome.replaceChildren(h("p", { class: "alert", role: "alert" }, `Cancel failed — ${describe(f)}`));
    }
  });

  retryButton.addEventListener("click", () => void replay(retryButton, shell, taskId, kind, outcome));

  function fillSummary(info: TaskInfo): void {
    const entry = (term: string, detail: Node | string): Node[] => [h("dt", {}, term), h("dd", {}, detail)];
    stateCell.replaceChildren(stateLabel(info.state));
    kind = info.spec?.kind ?? "";
    if (previousState === -1) actionsFor(info.state);
    summary.replaceChildren(
      ...entry("Kind", info.spec?.kind ?? ""),
      ...entry("Tenant", info.spec?.tenant ?? ""),
      ...entry("Class", className(info.spec?.priorityClass ?? 0)),
      ...entry("Created", time(info.created)),
      h("dt", {}, "State"),
      stateCell,
    );
  }

  function setStatus(text: string, busy: boolean): void {
    status.textContent = text;
    log.setAttribute("aria-busy", String(busy));
  }

  function show(event: TaskEvent): void {
    const meta = `#${event.sequence}${event.liveIndex ? `.${event.liveIndex}` : ""}`;
    const text = outputText(event.output);
    if (text !== null && !event.final) {
      outputs++;
      const confidence = event.partialConfidence ? ` · confidence ${event.partialConfidence.toFixed(2)}` : "";
      chunks.append(
        h(
          "li",
          { class: "chunk", "data-sequence": String(event.sequence), "data-live": String(event.liveIndex) },
          h("span", { class: "meta" }, meta, " · ", time(event.timestamp), confidence),
          h("span", { class: "text" }, text),
        ),
      );
    }
    if (event.state !== previousState || event.error || event.final) {
      previousState = event.state;
      const details = [event.step && `step ${event.step}`, event.workerId && `worker ${event.workerId}`, event.attempt && `attempt ${event.attempt}`]
        .filter(Boolean)
        .join(" · ");
      timeline.append(
        h(
          "li",
          { "data-sequence": String(event.sequence) },
          h("span", { class: "meta" }, meta, " · ", time(event.timestamp)),
          stateLabel(event.state),
          details ? ` — ${details}` : null,
          event.error ? h("span", { class: "state-error" }, ` — error ${event.error.errorClass}: ${event.error.message}`) : null,
          event.final && text !== null ? h("span", {}, " — result: ", h("span", { class: "result" }, text)) : null,
        ),
      );
      stateCell.replaceChildren(stateLabel(event.state));
      actionsFor(event.state);
    }
    if (event.final) {
      done = true;
      const error = event.error ? `: ${event.error.errorClass}: ${event.error.message}` : "";
      setStatus(`Finished — ${stateName(event.state)}${error}; ${outputs} partial outputs.`, false);
      pauseButton.disabled = true;
    }
  }

  async function stream(): Promise<void> {
    const client = gateway();
    for (let attempt = 0; !stop.signal.aborted && !paused && !done; attempt++) {
      const controller = new AbortController(); // aborted by the pause control or by leaving the view
      streaming = controller;
      const onStop = (): void => controller.abort();
      stop.signal.addEventListener("abort", onStop, { once: true });
      const signal = controller.signal;
      const track = trackStream(); // a renewed credential moves onto this stream in-band
      try {
        setStatus(after ? `Streaming — resumed after #${after}…` : "Streaming…", true);
        for await (const { event } of client.watchTask({ taskId, afterSequence: after }, { signal, onHeader: track.onHeader })) {
          if (!event) continue;
          attempt = 0;
          const key = `${event.sequence}:${event.liveIndex}`;
          if (seen.has(key)) continue;
          seen.add(key);
          if (!event.liveIndex) after = event.sequence; // best-effort partials are not stored: never resume from one
          show(event);
        }
        if (done) return;
      } catch (caught) {
        if (signal.aborted) return;
        const f = failure(caught);
        if (refused(f)) return shell.refused(f);
        if (!transient(f)) {
          setStatus(`Stream failed — ${describe(f)}`, false);
          return;
        }
        setStatus(`Connection lost (${describe(f)}); resuming after #${after}…`, false);
      } finally {
        track.release();
        stop.signal.removeEventListener("abort", onStop);
      }
      await pause(backoff(attempt), stop.signal);
    }
  }

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume stream" : "Pause stream";
    if (paused) {
      streaming?.abort();
      setStatus(`Paused after #${after}.`, false);
    } else {
      void stream();
    }
  });

  async function open(): Promise<void> {
    try {
      const reply = await gateway().getTask({ taskId }, { signal: stop.signal });
      if (reply.task) fillSummary(reply.task);
      if (reply.task && terminal(reply.task.state)) setStatus("Finished; reading its events…", true);
    } catch (caught) {
      if (stop.signal.aborted) return;
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      const text = f.code === Code.NotFound ? `No task ${taskId} (${f.message}).` : describe(f);
      main.replaceChildren(h("h1", { tabindex: "-1" }, "Task not found"), h("p", { class: "alert", role: "alert" }, text));
      return;
    }
    await stream();
  }

  main.replaceChildren(
    h("h1", { tabindex: "-1" }, "Task ", h("code", {}, taskId)),
    summary,
    h("div", { class: "row" }, pauseButton, status),
    h("div", { class: "row actions" }, cancelButton, retryButton),
    outcome,
    h("section", { "aria-labelledby": "output-title" }, h("h2", { id: "output-title" }, "Partial outputs"), log),
    h("section", { "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), timeline),
  );
  void open();
  return { title: `Task ${taskId}`, dispose: () => stop.abort() };
}
