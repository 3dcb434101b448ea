// One dead letter's diagnosis (GetDeadLetter): what failed where, how often and on which workers,
// the fingerprint and trace id to search by, its runbook, and the commands that act on it (copyable).
// Replay (a new task `<id>-r`) and Purge each ask first, saying what they touch; a purge the mesh
// wants a second factor for asks for a one-time code (`../stepup.ts`).
import { Code } from "@connectrpc/connect";
import type { DeadLetter } from "../../gen/mesh/v1/deadletter_pb.js";
import { classificationName, describe, failure, gateway, refused, runbookHref, time } from "../api.js";
import { confirm } from "../dialog.js";
import { h } from "../dom.js";
import { stepUpOptions, withStepUp } from "../stepup.js";
import type { Shell, View } from "../view.js";
import { replayedAs } from "./dlq.js";

/** A command on a line of its own with a button that copies it (the text stays selectable). */
function command(text: string, index: number): HTMLElement {
  const id = `command-${index}`;
  const status = h("span", { class: "hint", role: "status" });
  const button = h("button", { type: "button", "aria-describedby": id }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      status.textContent = "Copied.";
    } catch {
      getSelection()?.selectAllChildren(document.getElementById(id)!);
      status.textContent = "Selected: press Ctrl+C to copy.";
    }
  });
  return h("li", { class: "row" }, h("code", { id, class: "command" }, text), button, status);
}

/** Replays `taskId` after a confirmation; resolves to the new task's id (null when cancelled or refused). */
export async function replay(opener: HTMLElement, shell: Shell, taskId: string, kind: string, outcome: HTMLElement): Promise<string | null> {
  const confirmed = await confirm(opener, {
    title: `Replay task ${taskId}?`,
    body: [
      h("p", {}, `This admits the ${kind} task `, h("code", {}, taskId), " again, with the same input, as a new task ", h("code", {}, `${taskId}-r`), " (a replay already made is returned, not repeated)."),
      h("p", {}, "The dead-letter record stays and lists the new task under “replayed as”."),
    ],
    action: `Replay ${taskId}`,
  });
  if (!confirmed) return null;
  try {
    const reply = await gateway().replayDeadLetter({ taskId });
    const link = h("a", { href: `/console/tasks/${encodeURIComponent(reply.taskId)}`, id: "replayed-task" }, h("code", {}, reply.taskId));
    outcome.replaceChildren(h("p", { role: "status" }, reply.deduplicated ? "Already replayed as " : "Replayed as ", link, "."));
    return reply.taskId;
  } catch (caught) {
    const f = failure(caught);
    if (refused(f)) shell.refused(f);
    else outcome.replaceChildren(h("p", { class: "alert", role: "alert" }, `Replay failed — ${describe(f)}`));
    return null;
  }
}

export function deadLetter(main: HTMLElement, shell: Shell, taskId: string): View {
  const stop = new AbortController();
  const outcome = h("div", { id: "dlq-outcome" });
  const replayButton = h("button", { type: "button", id: "replay" }, "Replay…");
  const purgeButton = h("button", { type: "button", id: "purge", class: "danger" }, "Purge…");
  const summary = h("dl", { class: "summary", id: "dlq-diagnosis" });
  const commands = h("ul", { class: "commands", id: "dlq-commands" });
  let kind = "";

  function fill(letter: DeadLetter): void {
    kind = letter.spec?.kind ?? "";
    const entry = (term: string, detail: Node | string): Node[] => [h("dt", {}, term), h("dd", {}, detail)];
    const href = runbookHref(letter.runbook);
    const runbook = href ? h("a", { href, id: "runbook" }, letter.runbook) : letter.runbook || "—";
    summary.replaceChildren(
      ...entry("Task", h("a", { href: `/console/tasks/${encodeURIComponent(letter.taskId)}` }, h("code", {}, letter.taskId))),
      ...entry("Tenant", letter.spec?.tenant ?? ""),
      ...entry("Kind", letter.spec?.kind ?? ""),
      ...entry("Classification", classificationName(letter.classification)),
      ...entry("Error", h("span", { class: "state-error" }, `✗ ${letter.errorClass}`)),
      ...entry("Message", h("span", { class: "message", id: "dlq-message" }, letter.message)),
      ...entry("Step", letter.step || "—"),
      ...entry("Attempts", String(letter.attempts)),
      ...entry("Workers", letter.workerIds.length ? h("span", { class: "mono" }, letter.workerIds.join(", ")) : "—"),
      ...entry("Fingerprint", h("code", {}, letter.fingerprint || "—")),
      ...entry("Trace id", h("code", {}, letter.traceId || "—")),
      ...entry("Dead at", time(letter.deadAt)),
      ...entry("Runbook", runbook),
      ...entry("Replay of", letter.replayOf ? h("a", { href: `/console/dlq/${encodeURIComponent(letter.replayOf)}` }, h("code", {}, letter.replayOf)) : "—"),
      ...entry("Replayed as", replayedAs(letter)),
    );
    const lines = [...letter.cliCommands, letter.dashboardView].filter(Boolean);
    commands.replaceChildren(...lines.map(command));
  }

  async function load(): Promise<DeadLetter | null> {
    try {
      const reply = await gateway().getDeadLetter({ taskId }, { signal: stop.signal });
      if (reply.deadLetter) fill(reply.deadLetter);
      return reply.deadLetter ?? null;
    } catch (caught) {
      if (stop.signal.aborted) return null;
      const f = failure(caught);
      if (refused(f)) {
        shell.refused(f);
        return null;
      }
      const text = f.code === Code.NotFound ? `No dead letter for task ${taskId} (${f.message}).` : describe(f);
      main.replaceChildren(
        h("h1", { tabindex: "-1" }, "Dead letter not found"),
        h("p", { class: "alert", role: "alert" }, text),
        h("p", {}, h("a", { href: "/console/dlq" }, "All dead letters")),
      );
      return null;
    }
  }

  replayButton.addEventListener("click", async () => {
    const replayed = await replay(replayButton, shell, taskId, kind, outcome);
    if (replayed) await load();
  });

  purgeButton.addEventListener("click", async () => {
    const confirmed = await confirm(purgeButton, {
      title: `Purge the dead letter of ${taskId}?`,
      body: [
        h("p", { id: "purge-scope" }, "This deletes 1 dead-letter record: ", h("code", {}, taskId), ". The task's events stay; it cannot be replayed from here afterwards."),
      ],
      action: `Purge ${taskId}`,
    });
    if (!confirmed) return;
    try {
      const reply = await withStepUp(purgeButton, (token) => gateway().purgeDeadLetters({ taskId }, stepUpOptions(token)));
      if (!reply) {
        outcome.replaceChildren(h("p", { role: "status" }, "Nothing purged: the second factor was cancelled."));
        return;
      }
      replayButton.disabled = true;
      purgeButton.disabled = true;
      outcome.replaceChildren(
        h("p", { role: "status" }, `Purged ${reply.purged} record. `, h("a", { href: "/console/dlq", id: "back-to-dlq" }, "All dead letters")),
      );
      outcome.querySelector("a")?.focus(); // the buttons it was on are disabled now
    } catch (caught) {
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      outcome.replaceChildren(h("p", { class: "alert", role: "alert" }, `Purge failed — ${describe(f)}`));
    }
  });

  main.replaceChildren(
    h("h1", { tabindex: "-1" }, "Dead letter ", h("code", {}, taskId)),
    h("div", { class: "row" }, replayButton, purgeButton),
    outcome,
    h("section", { "aria-labelledby": "diagnosis-title" }, h("h2", { id: "diagnosis-title" }, "Diagnosis"), summary),
    h("section", { "aria-labelledby": "commands-title" }, h("h2", { id: "commands-title" }, "Commands"), h("p", { class: "hint" }, "From the command line or the terminal dashboard, in the order the runbook takes them."), commands),
  );
  void load();
  return { title: `Dead letter ${taskId}`, dispose: () => stop.abort() };
}
