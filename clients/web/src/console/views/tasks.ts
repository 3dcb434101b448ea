// A tenant's tasks, newest first, a page at a time (ListTasks). State, kind and a creation-time
// window are filters the mesh applies: a filtered page holds only matching tasks (possibly fewer
// than a page, with older ones to go on to). The form's values live in the URL's query, so a
// filtered list can be linked to (/console/tasks?kind=stream&state=failed).
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TaskState, type TaskInfo } from "../../gen/mesh/v1/task_pb.js";
import { className, describe, failure, gateway, refused, STATE_NAMES, stateLabel, stateName, time } from "../api.js";
import { choose, field, h, table } from "../dom.js";
import type { Shell, View } from "../view.js";

const PAGE = 25;
// The state names of the URL and the select (api's STATE_NAMES) → TaskState.
const STATE_BY_NAME = new Map(
  Object.values(TaskState)
    .filter((value): value is TaskState => typeof value === "number" && value !== TaskState.UNSPECIFIED)
    .map((value) => [stateName(value), value]),
);

export function tasks(main: HTMLElement, shell: Shell): View {
  const query = new URLSearchParams(location.search);
  const tenant = h("input", { id: "tenant", name: "tenant", type: "text", autocomplete: "off", spellcheck: "false" });
  tenant.value = query.get("tenant") ?? "";
  const state = h(
    "select",
    { id: "state", name: "state" },
    h("option", { value: "" }, "Any state"),
    ...STATE_NAMES.map((name) => h("option", { value: name }, name)),
  );
  choose(state, query.get("state") ?? "");
  const kind = h("input", { id: "kind", name: "kind", type: "text", autocomplete: "off", spellcheck: "false" });
  kind.value = query.get("kind") ?? "";
  // Local date and time (datetime-local); in the URL as written, e.g. after=2026-12-03T17:05.
  const after = h("input", { id: "after", name: "after", type: "datetime-local", step: "1" });
  after.value = query.get("after") ?? "";
  const before = h("input", { id: "before", name: "before", type: "datetime-local", step: "1" });
  before.value = query.get("before") ?? "";
  const form = h(
    "form",
    { class: "fields", role: "search", "aria-label": "Tasks", novalidate: true },
    field("tenant", "Tenant", tenant, "Empty: your credential's own tenant."),
    field("state", "State", state),
    field("kind", "Kind", kind),
    field("after", "Created after", after),
    field("before", "Created before", before),
    h("button", { type: "submit" }, "Show"),
  );
  const summary = h("p", { id: "tasks-summary", role: "status" });
  const results = h("div", { id: "tasks-results" });
  const newer = h("button", { type: "button", disabled: true }, "Newer");
  const older = h("button", { type: "button", disabled: true }, "Older");
  const tokens: string[] = [""]; // the page tokens seen, to page back
  let pageIndex = 0;
  let nextToken = "";
  let loaded: TaskInfo[] = [];
  let generation = 0; // a late reply for an earlier request is dropped

  // The request field a refusal names (tidemesh-field) → the control it is about.
  const controls: Record<string, HTMLInputElement | HTMLSelectElement> = {
    tenant,
    page_token: tenant,
    kind,
    states: state,
    created_after: after,
    created_before: before,
  };

  function clearError(): void {
    for (const control of [tenant, state, kind, after, before]) {
      control.removeAttribute("aria-invalid");
      document.getElementById(`${control.id}-error`)!.textContent = "";
    }
  }

  function showError(message: string, fieldName: string | null, moveFocus: boolean): void {
    const target = fieldName ? controls[fieldName.replace(/\[\d+\]$/, "")] : undefined;
    results.replaceChildren();
    if (target) {
      target.setAttribute("aria-invalid", "true");
      document.getElementById(`${target.id}-error`)!.textContent = message;
      if (moveFocus) target.focus(); // only after a search the user asked for, never on arrival
    } else {
      results.replaceChildren(h("p", { class: "alert", role: "alert" }, message));
    }
    summary.textContent = "";
  }

  function filtered(): boolean {
    return Boolean(state.value || kind.value.trim() || after.value || before.value);
  }

  function render(): void {
    const rows = loaded.map((t) => [
      h("a", { href: `/console/tasks/${encodeURIComponent(t.spec?.taskId ?? "")}` }, h("code", {}, t.spec?.taskId ?? "")),
      t.spec?.kind ?? "",
      stateLabel(t.state),
      className(t.spec?.priorityClass ?? 0),
      time(t.created),
      time(t.updated),
      String(t.attempt),
    ]);
    results.replaceChildren(
      table(`Tasks, page ${pageIndex + 1}`, ["Task", "Kind", "State", "Class", "Created", "Updated", "Attempt"], rows, new Set([6])),
    );
    const count = `${loaded.length} ${filtered() ? "matching " : ""}task${loaded.length === 1 ? "" : "s"} on page ${pageIndex + 1}`;
    const more = nextToken ? (filtered() ? "; more may match on the next page" : "; older tasks on the next page") : "";
    summary.textContent = `${count}${more}.`;
    newer.disabled = pageIndex === 0;
    older.disabled = !nextToken;
  }

  /** A datetime-local value (local time) as a Timestamp; empty: no bound. */
  function bound(input: HTMLInputElement): ReturnType<typeof timestampFromDate> | undefined {
    return input.value ? timestampFromDate(new Date(input.value)) : undefined;
  }

  async function load(asked = false): Promise<void> {
    const mine = ++generation;
    clearError();
    summary.textContent = "Loading…";
    try {
      const wanted = STATE_BY_NAME.get(state.value);
      const reply = await gateway().listTasks({
        tenant: tenant.value.trim(),
        limit: PAGE,
        pageToken: tokens[pageIndex],
        kind: kind.value.trim(),
        states: wanted === undefined ? [] : [wanted],
        createdAfter: bound(after),
        createdBefore: bound(before),
      });
      if (mine !== generation) return;
      loaded = reply.tasks;
      nextToken = reply.nextPageToken;
      render();
    } catch (caught) {
      if (mine !== generation) return;
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      showError(describe(f), f.field, asked);
    }
  }

  function remember(): void {
    const params = new URLSearchParams();
    if (tenant.value.trim()) params.set("tenant", tenant.value.trim());
    if (state.value) params.set("state", state.value);
    if (kind.value.trim()) params.set("kind", kind.value.trim());
    if (after.value) params.set("after", after.value);
    if (before.value) params.set("before", before.value);
    const search = params.toString();
    history.replaceState(null, "", `/console/tasks${search ? `?${search}` : ""}`);
  }

  function fromTheStart(asked: boolean): void {
    remember();
    tokens.length = 1;
    pageIndex = 0;
    void load(asked);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    fromTheStart(true);
  });
  // A changed filter asks the mesh again, from the newest task (a token is a place, not a filter).
  for (const control of [state, kind, after, before]) control.addEventListener("change", () => fromTheStart(false));
  older.addEventListener("click", () => {
    tokens[pageIndex + 1] = nextToken;
    pageIndex++;
    void load();
  });
  newer.addEventListener("click", () => {
    pageIndex = Math.max(0, pageIndex - 1);
    void load();
  });

  main.replaceChildren(
    h("h1", { tabindex: "-1" }, "Tasks"),
    form,
    summary,
    results,
    h("div", { class: "row pager" }, newer, older),
  );
  void load();
  return { title: "Tasks", dispose: () => void generation++ };
}
