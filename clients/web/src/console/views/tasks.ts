// A tenant's tasks, newest first, a page at a time (ListTasks); state, kind and a creation-time
// window filter the page shown. The form's values live in the URL's query, so a filtered list can be linked to.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { TaskInfo } from "../../gen/mesh/v1/task_pb.js";
import { className, describe, failure, gateway, refused, STATE_NAMES, stateLabel, stateName, time } from "../api.js";
import { field, h, table } from "../dom.js";
import type { Shell, View } from "../view.js";

const PAGE = 25;

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
  state.value = query.get("state") ?? "";
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

  function clearError(): void {
    tenant.removeAttribute("aria-invalid");
    for (const id of ["tenant", "state", "kind", "after", "before"]) document.getElementById(`${id}-error`)!.textContent = "";
  }

  function showError(message: string, fieldName: string | null, moveFocus: boolean): void {
    const target = fieldName === "tenant" || fieldName === "page_token" ? "tenant" : null;
    if (target) {
      tenant.setAttribute("aria-invalid", "true");
      document.getElementById("tenant-error")!.textContent = message;
      if (moveFocus) tenant.focus(); // only after a search the user asked for, never on arrival
      results.replaceChildren();
    } else {
      results.replaceChildren(h("p", { class: "alert", role: "alert" }, message));
    }
    summary.textContent = "";
  }

  function render(): void {
    const wanted = state.value;
    const kindText = kind.value.trim();
    const from = after.value ? new Date(after.value).getTime() : -Infinity;
    const until = before.value ? new Date(before.value).getTime() : Infinity;
    const created = (t: TaskInfo): number => (t.created ? timestampDate(t.created).getTime() : 0);
    const shown = loaded.filter(
      (t) =>
        (!wanted || stateName(t.state) === wanted) &&
        (!kindText || t.spec?.kind === kindText) &&
        created(t) >= from &&
        created(t) < until,
    );
    const rows = shown.map((t) => [
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
    summary.textContent = `${shown.length} of ${loaded.length} tasks on page ${pageIndex + 1}${nextToken ? "; older tasks on the next page" : ""}.`;
    newer.disabled = pageIndex === 0;
    older.disabled = !nextToken;
  }

  async function load(asked = false): Promise<void> {
    const mine = ++generation;
    clearError();
    summary.textContent = "Loading…";
    try {
      const reply = await gateway().listTasks({ tenant: tenant.value.trim(), limit: PAGE, pageToken: tokens[pageIndex] });
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

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    remember();
    tokens.length = 1;
    pageIndex = 0;
    void load(true);
  });
  for (const control of [state, kind, after, before]) control.addEventListener("change", () => (remember(), render()));
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
