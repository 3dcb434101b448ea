// Submit a task from a form generated from its kind's input message: ListKinds names the kinds and
// their input types; a built-in kind's message is in the generated descriptors (a case of
// TaskPayload), a user kind's comes from the schema registry (GetSchema's descriptor set). Every
// field is a labelled control with its proto type; values are checked here before anything is sent,
// each error tied to its field. Once admitted, the page moves to the task, where its stream follows.
import {
  create,
  createFileRegistry,
  fromBinary,
  fromJson,
  ScalarType,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import { anyPack, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import type { KindInfo } from "../../gen/mesh/v1/kind_pb.js";
import { PriorityClass, TaskPayloadSchema, type TaskPayload } from "../../gen/mesh/v1/task_pb.js";
import { describe, failure, gateway, kinds, refused, schemas } from "../api.js";
import { choose, field, h } from "../dom.js";
import type { Shell, View } from "../view.js";

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/; // a tenant, as admission checks it

/** A control that reads its value as JSON (for fromJson) or says what is wrong with it. */
interface Input {
  id: string;
  name: string; // the proto field name, as the server's tidemesh-field names it
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
  read(): { value?: JsonValue; error?: string };
}

const INTEGER_RANGES: Partial<Record<ScalarType, [bigint, bigint]>> = {
  [ScalarType.UINT32]: [0n, 4294967295n],
  [ScalarType.FIXED32]: [0n, 4294967295n],
  [ScalarType.INT32]: [-2147483648n, 2147483647n],
  [ScalarType.SINT32]: [-2147483648n, 2147483647n],
  [ScalarType.SFIXED32]: [-2147483648n, 2147483647n],
  [ScalarType.UINT64]: [0n, 18446744073709551615n],
  [ScalarType.FIXED64]: [0n, 18446744073709551615n],
  [ScalarType.INT64]: [-9223372036854775808n, 9223372036854775807n],
  [ScalarType.SINT64]: [-9223372036854775808n, 9223372036854775807n],
  [ScalarType.SFIXED64]: [-9223372036854775808n, 9223372036854775807n],
};

function scalarName(type: ScalarType): string {
  return ScalarType[type].toLowerCase();
}

/** One scalar typed as text: its JSON value, or the rule it breaks. */
function scalar(type: ScalarType, text: string): { value?: JsonValue; error?: string } {
  const range = INTEGER_RANGES[type];
  if (range) {
    if (!/^-?\d+$/.test(text) || BigInt(text) < range[0] || BigInt(text) > range[1]) {
      return { error: `must be a whole number from ${range[0]} to ${range[1]}` };
    }
    return { value: range[1] > 4294967295n ? text : Number(text) };
  }
  if (type === ScalarType.FLOAT || type === ScalarType.DOUBLE) {
    const number = Number(text);
    return text.trim() === "" || !Number.isFinite(number) ? { error: "must be a number, e.g. 0.5" } : { value: number };
  }
  if (type === ScalarType.BYTES) {
    return /^[A-Za-z0-9+/]*={0,2}$/.test(text) && text.length % 4 === 0 ? { value: text } : { error: "must be base64" };
  }
  return { value: text };
}

function typeText(f: DescField): string {
  switch (f.fieldKind) {
    case "scalar":
      return scalarName(f.scalar);
    case "enum":
      return `enum ${f.enum.name}`;
    case "message":
      return `message ${f.message.typeName} (JSON)`;
    case "list":
      return f.listKind === "scalar" ? `repeated ${scalarName(f.scalar)}` : `repeated ${f.listKind === "enum" ? f.enum.name : f.message.typeName} (JSON)`;
    case "map":
      return "map (JSON object)";
  }
}

function inputFor(f: DescField, prefix: string): Input {
  const id = `${prefix}-${f.name}`;
  const base = { id, name: f.name };
  if (f.fieldKind === "scalar" && f.scalar === ScalarType.BOOL) {
    const control = h("select", { id, name: f.name }, h("option", { value: "false" }, "false"), h("option", { value: "true" }, "true"));
    choose(control);
    return { ...base, control, read: () => ({ value: control.value === "true" }) };
  }
  if (f.fieldKind === "enum") {
    const control = h("select", { id, name: f.name }, ...f.enum.values.map((v) => h("option", { value: v.name }, v.name)));
    choose(control);
    return { ...base, control, read: () => ({ value: control.value }) };
  }
  if (f.fieldKind === "scalar") {
    const numeric = f.scalar !== ScalarType.STRING && f.scalar !== ScalarType.BYTES;
    const control = h("input", { id, name: f.name, type: "text", autocomplete: "off", spellcheck: "false", inputmode: numeric && f.scalar !== ScalarType.FLOAT && f.scalar !== ScalarType.DOUBLE ? "numeric" : undefined });
    if (numeric) control.value = "0";
    return { ...base, control, read: () => scalar(f.scalar, numeric ? control.value.trim() : control.value) };
  }
  if (f.fieldKind === "list" && f.listKind === "scalar") {
    const control = h("textarea", { id, name: f.name, rows: "3", spellcheck: "false" });
    const type = f.scalar;
    return {
      ...base,
      control,
      read: () => {
        const values: JsonValue[] = [];
        const lines = control.value.split("\n").filter((line) => line.trim() !== "");
        for (const [index, line] of lines.entries()) {
          const one = scalar(type, type === ScalarType.STRING ? line : line.trim());
          if (one.error) return { error: `line ${index + 1} ${one.error}` };
          values.push(one.value as JsonValue);
        }
        return { value: values };
      },
    };
  }
  // Nested messages, maps and repeated messages: JSON, as the REST API takes them.
  const control = h("textarea", { id, name: f.name, rows: "3", spellcheck: "false" });
  return {
    ...base,
    control,
    read: () => {
      if (!control.value.trim()) return {};
      try {
        return { value: JSON.parse(control.value) as JsonValue };
      } catch (caught) {
        return { error: `must be JSON (${(caught as Error).message})` };
      }
    },
  };
}

function hintFor(f: DescField): string {
  switch (f.fieldKind === "list" && f.listKind === "scalar" ? "lines" : f.fieldKind === "scalar" ? scalarName(f.scalar) : "") {
    case "lines":
      return "One value per line.";
    case "string":
      return "";
    case "bytes":
      return "Base64.";
    default:
      return f.fieldKind === "scalar" && INTEGER_RANGES[f.scalar] ? `A whole number, ${INTEGER_RANGES[f.scalar]![0]} to ${INTEGER_RANGES[f.scalar]![1]}.` : "";
  }
}

export function submit(main: HTMLElement, shell: Shell): View {
  const stop = new AbortController();
  const query = new URLSearchParams(location.search);
  const kindSelect = h("select", { id: "submit-kind", name: "kind" });
  const tenant = h("input", { id: "submit-tenant", name: "tenant", type: "text", autocomplete: "off", spellcheck: "false" });
  const priority = h(
    "select",
    { id: "submit-priority", name: "priority_class" },
    h("option", { value: String(PriorityClass.INTERACTIVE) }, "interactive"),
    h("option", { value: String(PriorityClass.STANDARD) }, "standard"),
    h("option", { value: String(PriorityClass.BATCH) }, "batch"),
  );
  choose(priority, String(PriorityClass.STANDARD));
  const rank = h("input", { id: "submit-rank", name: "priority", type: "text", inputmode: "numeric", autocomplete: "off" });
  rank.value = "0";
  const idempotency = h("input", { id: "submit-idempotency", name: "idempotency_key", type: "text", autocomplete: "off", spellcheck: "false" });
  const inputFields = h("fieldset", { id: "submit-input" });
  const formError = h("div", { id: "submit-outcome" });
  const send = h("button", { type: "submit" }, "Submit");
  const form = h(
    "form",
    { class: "stack", novalidate: true, "aria-labelledby": "submit-title" },
    field("submit-kind", "Kind", kindSelect),
    inputFields,
    field("submit-tenant", "Tenant", tenant, "Empty: your credential's own tenant."),
    field("submit-priority", "Priority class", priority, "Interactive is dispatched first, then standard, then batch."),
    field("submit-rank", "Priority within the class", rank, "0 to 100; higher runs first."),
    field("submit-idempotency", "Idempotency key", idempotency, "Optional: a repeated submit with the same key returns the first task."),
    send,
    formError,
  );
  let known: KindInfo[] = [];
  let message: DescMessage | null = null;
  let payloadCase: string | null = null; // the TaskPayload field of a built-in kind; null: a user kind (custom)
  let inputs: Input[] = [];

  function setError(input: { id: string; control: HTMLElement }, text: string): void {
    input.control.setAttribute("aria-invalid", "true");
    document.getElementById(`${input.id}-error`)!.textContent = text;
  }

  function clearErrors(): void {
    formError.replaceChildren();
    for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
    for (const line of form.querySelectorAll(".field-error")) line.textContent = "";
  }

  async function messageFor(info: KindInfo): Promise<DescMessage> {
    const inputType = info.kind?.inputType ?? "";
    const builtin = TaskPayloadSchema.fields.find((f) => f.fieldKind === "message" && f.message.typeName === inputType);
    if (builtin && builtin.fieldKind === "message") {
      payloadCase = builtin.localName;
      return builtin.message;
    }
    payloadCase = null;
    const reply = await schemas().getSchema({ subject: inputType, version: 0 }, { signal: stop.signal });
    const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, reply.schema?.descriptorSet ?? new Uint8Array()));
    const found = registry.getMessage(inputType);
    if (!found) throw new Error(`the registered schema of ${inputType} does not hold that message`);
    return found;
  }

  async function showKind(): Promise<void> {
    clearErrors();
    const info = known.find((k) => k.kind?.name === kindSelect.value);
    inputs = [];
    message = null;
    inputFields.replaceChildren(h("legend", {}, "Input"), h("p", { class: "hint" }, "Loading the kind's schema…"));
    if (!info) return;
    try {
      message = await messageFor(info);
    } catch (caught) {
      if (stop.signal.aborted) return;
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      inputFields.replaceChildren(h("legend", {}, "Input"), h("p", { class: "alert", role: "alert" }, `No form for ${info.kind?.name}: ${describe(f)}`));
      return;
    }
    inputs = message.fields.map((f) => inputFor(f, "input"));
    const description = info.kind?.description;
    inputFields.replaceChildren(
      h("legend", {}, `Input: `, h("code", {}, message.typeName)),
      ...(description ? [h("p", { class: "hint" }, description)] : []),
      ...inputs.map((input, index) => {
        const f = message!.fields[index];
        const hint = hintFor(f);
        return field(input.id, `${f.name} (${typeText(f)})`, input.control, hint || undefined);
      }),
    );
    const search = new URLSearchParams({ kind: kindSelect.value });
    history.replaceState(null, "", `/console/submit?${search}`);
  }

  /** The server named a field (tidemesh-field, e.g. spec.payload.stream.chunks): put its error there. */
  function fieldFor(name: string | null): { id: string; control: HTMLElement } | null {
    if (!name) return null;
    if (name === "spec.tenant" || name === "tenant") return { id: "submit-tenant", control: tenant };
    if (name === "spec.priority") return { id: "submit-rank", control: rank };
    if (name === "spec.idempotency_key") return { id: "submit-idempotency", control: idempotency };
    if (name.endsWith("kind")) return { id: "submit-kind", control: kindSelect };
    const last = name.split(".").pop();
    return inputs.find((input) => input.name === last) ?? null;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    if (!message) return;
    const json: JsonObject = {};
    const invalid: { id: string; control: HTMLElement }[] = [];
    inputs.forEach((input, index) => {
      const read = input.read();
      if (read.error) {
        setError(input, `${input.name} ${read.error}.`);
        invalid.push(input);
      } else if (read.value !== undefined) {
        json[message!.fields[index].jsonName] = read.value;
      }
    });
    const tenantText = tenant.value.trim();
    if (tenantText && !TOKEN.test(tenantText)) {
      const target = { id: "submit-tenant", control: tenant };
      setError(target, "a tenant is 1 to 64 of A-Z a-z 0-9 _ -.");
      invalid.push(target);
    }
    const rankText = rank.value.trim();
    if (!/^\d{1,3}$/.test(rankText) || Number(rankText) > 100) {
      const target = { id: "submit-rank", control: rank };
      setError(target, "the priority is a whole number from 0 to 100.");
      invalid.push(target);
    }
    if (invalid.length) {
      invalid[0].control.focus();
      return;
    }
    let payload: TaskPayload;
    try {
      const value = fromJson(message, json);
      payload = payloadCase
        ? create(TaskPayloadSchema, { body: { case: payloadCase, value } as TaskPayload["body"] })
        : create(TaskPayloadSchema, { body: { case: "custom", value: anyPack(message, value) } });
    } catch (caught) {
      formError.replaceChildren(h("p", { class: "alert", role: "alert" }, `The input does not fit ${message.typeName}: ${(caught as Error).message}`));
      return;
    }
    send.disabled = true;
    try {
      const reply = await gateway().submitTask({
        spec: {
          kind: kindSelect.value,
          tenant: tenantText,
          priorityClass: Number(priority.value),
          priority: Number(rankText),
          idempotencyKey: idempotency.value.trim(),
          payload,
        },
      });
      shell.navigate(`/console/tasks/${encodeURIComponent(reply.taskId)}`);
    } catch (caught) {
      send.disabled = false;
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      const target = fieldFor(f.field);
      if (target) {
        setError(target, f.message);
        target.control.focus();
      } else {
        formError.replaceChildren(h("p", { class: "alert", role: "alert" }, `Not submitted — ${describe(f)}`));
      }
    }
  });
  kindSelect.addEventListener("change", () => void showKind());

  async function open(): Promise<void> {
    try {
      known = (await kinds().listKinds({}, { signal: stop.signal })).kinds;
    } catch (caught) {
      if (stop.signal.aborted) return;
      const f = failure(caught);
      if (refused(f)) return shell.refused(f);
      form.replaceWith(h("p", { class: "alert", role: "alert" }, `The kinds could not be listed — ${describe(f)}`));
      return;
    }
    kindSelect.replaceChildren(
      ...known.map((k) => h("option", { value: k.kind?.name ?? "" }, `${k.kind?.name}${k.kind?.builtin ? "" : " (user kind)"}`)),
    );
    const wanted = query.get("kind");
    choose(kindSelect, wanted && known.some((k) => k.kind?.name === wanted) ? wanted : undefined);
    await showKind();
  }

  main.replaceChildren(h("h1", { id: "submit-title", tabindex: "-1" }, "Submit a task"), form);
  void open();
  return { title: "Submit a task", dispose: () => stop.abort() };
}
