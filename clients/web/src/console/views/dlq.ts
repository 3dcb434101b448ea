// Dead letters, newest first (ListDeadLetters), for one tenant or every tenant the credential may
// read; the tenant is in the URL's query. A tenant's records can be purged at once, behind a
// confirmation that shows how many records and which (the first ten ids), and a one-time code where
// the mesh wants a second factor (`../stepup.ts`).
import type { DeadLetter } from "../../gen/mesh/v1/deadletter_pb.js";
import { classificationName, describe, failure, gateway, refused, time } from "../api.js";
import { confirm } from "../dialog.js";
import { field, h, table } from "../dom.js";
import { stepUpOptions, withStepUp } from "../stepup.js";
import type { Shell, View } from "../view.js";

const LIMIT = 100;
const PREVIEW = 10; // ids a tenant-wide purge lists before "and N more"
const EVERY = 100_000; // a purge's preview asks for every record of the tenant

function taskLink(taskId: string, base: "tasks" | "dlq"): HTMLElement {
  return h("a", { href: `/console/${base}/${encodeURIComponent(taskId)}` }, h("code", {}, taskId));
}

export function replayedAs(letter: DeadLetter): Node | string {
  if (!letter.replayedAs.length) return "—";
  const list = h("ul", { class: "inline" }, ...letter.replayedAs.map((id) => h("li", {}, taskLink(id, "tasks"))));
  return list;
}

export function dlq(main: HTMLElement, shell: Shell): View {
  const query = new URLSearchParams(location.search);
  const tenant = h("input", { id: "dlq-tenant", name: "tenant", type: "text", autocomplete: "off", spellcheck: "false" });
  tenant.value = query.get("tenant") ?? "";
  const form = h(
    "form",
    { class: "fields", role: "search", "aria-label": "Dead letters", novalidate: true },
    field("dlq-tenant", "Tenant", tenant, "Empty: every tenant your credential may read."),
    h("button", { type: "submit" }, "Show"),
  );
  const summary = h("p", { id: "dlq-summary", role: "status" });
  const results = h("div", { id: "dlq-results" });
  const purge = h("button", { type: "button", id: "purge-tenant", class: "danger", hidden: true }, "Purge tenant…");
  const outcome = h("div", { id: "dlq-outcome", tabindex: "-1" });
  let generation = 0;

  async function load(asked = false): Promise<void> {
    const mine = ++generation;
    const error = document.getElementById("dlq-tenant-error")!;
    error.textContent = "";
    tenant.removeAttribute("aria-invalid");
    summary.textContent = "Loading…";
    const wanted = tenant.value.trim();
    try {
      const reply = await gateway().listDeadLetters({ tenant: wanted, limit: LIMIT });
      if (mine !== generation) return;
      const rows = reply.deadLetters.map((letter) => [
        taskLink(letter.taskId, "dlq"),
        letter.spec?.tenant ?? "",
        letter.spec?.kind ?? "",
        classificationName(letter.classification),
        h("span", { class: "message" }, letter.message),
        time(letter.deadAt),
        replayedAs(letter),
      ]);
      results.replaceChildren(
        table("Dead letters, newest first", ["Task", "Tenant", "Kind", "Classification", "Message", "Dead at", "Replayed as"], rows),
      );
      const scope = wanted ? `of tenant ${wanted}` : "of every tenant you may read";
      summary.textContent = `${reply.deadLetters.length} dead letters ${scope}${reply.deadLetters.length === LIMIT ? ` (the newest ${LIMIT})` : ""}.`;
      purge.hidden = !wanted || !reply.deadLetters.length;
      purge.textContent = `Purge tenant ${wanted}…`;
    } catch (caught) {
      if (mine !== generation) return;
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      summary.textContent = "";
      results.replaceChildren();
      purge.hidden = true;
      if (f.field === "tenant") {
        tenant.setAttribute("aria-invalid", "true");
        error.textContent = describe(f);
        if (asked) tenant.focus();
      } else {
        results.replaceChildren(h("p", { class: "alert", role: "alert" }, describe(f)));
      }
    }
  }

  purge.addEventListener("click", async () => {
    const wanted = tenant.value.trim();
    outcome.replaceChildren();
    let ids: string[];
    try {
      ids = (await gateway().listDeadLetters({ tenant: wanted, limit: EVERY })).deadLetters.map((l) => l.taskId);
    } catch (caught) {
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      outcome.replaceChildren(h("p", { class: "alert", role: "alert" }, describe(f)));
      return;
    }
    const more = ids.length - PREVIEW;
    const confirmed = await confirm(purge, {
      title: `Purge every dead letter of tenant ${wanted}?`,
      body: [
        h("p", { id: "purge-scope" }, `This deletes ${ids.length} dead-letter record${ids.length === 1 ? "" : "s"} of tenant ${wanted}. The tasks' events stay; the records cannot be replayed afterwards.`),
        h("ul", { class: "ids", id: "purge-ids" }, ...ids.slice(0, PREVIEW).map((id) => h("li", {}, h("code", {}, id)))),
        ...(more > 0 ? [h("p", {}, `… and ${more} more.`)] : []),
      ],
      action: `Purge ${ids.length} record${ids.length === 1 ? "" : "s"}`,
    });
    if (!confirmed) return;
    try {
      const reply = await withStepUp(purge, (token) => gateway().purgeDeadLetters({ tenant: wanted }, stepUpOptions(token)));
      if (!reply) {
        outcome.replaceChildren(h("p", { role: "status" }, "Nothing purged: the second factor was cancelled."));
        return;
      }
      outcome.replaceChildren(h("p", { role: "status" }, `Purged ${reply.purged} dead-letter records of tenant ${wanted}.`));
      await load();
      if (purge.hidden) outcome.focus(); // the button it was on is gone with the records
    } catch (caught) {
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      outcome.replaceChildren(h("p", { class: "alert", role: "alert" }, describe(f)));
    }
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = tenant.value.trim();
    history.replaceState(null, "", `/console/dlq${wanted ? `?tenant=${encodeURIComponent(wanted)}` : ""}`);
    void load(true);
  });

  main.replaceChildren(h("h1", { tabindex: "-1" }, "Dead letters"), form, summary, results, h("div", { class: "row pager" }, purge), outcome);
  void load();
  return { title: "Dead letters", dispose: () => void generation++ };
}
