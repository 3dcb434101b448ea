// The console's one gRPC-Web client: connect-web to the same origin (Envoy translates to the
// gateway's gRPC), the signed-in credential added to every call by an interceptor.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AccessService } from "../gen/mesh/v1/access_pb.js";
import { GatewayService } from "../gen/mesh/v1/gateway_pb.js";
import { KindService } from "../gen/mesh/v1/kind_pb.js";
import { SchemaService } from "../gen/mesh/v1/schema_pb.js";
import { FailureClass } from "../gen/mesh/v1/deadletter_pb.js";
import { PriorityClass, TaskState } from "../gen/mesh/v1/task_pb.js";
import { WorkerHealth } from "../gen/mesh/v1/status_pb.js";
import { authorization, credential } from "./session.js";

export type Gateway = Client<typeof GatewayService>;

const withCredential: Interceptor = (next) => async (request) => {
  const value = credential();
  if (value) request.header.set("authorization", authorization(value));
  return next(request);
};

function transport(override?: string): ReturnType<typeof createGrpcWebTransport> {
  const interceptors: Interceptor[] = override
    ? [(next) => async (request) => (request.header.set("authorization", authorization(override)), next(request))]
    : [withCredential];
  return createGrpcWebTransport({ baseUrl: location.origin, interceptors });
}

export function gateway(override?: string): Gateway {
  return createClient(GatewayService, transport(override));
}

/** The kind registry (ListKinds), on the signed-in credential. */
export function kinds(): Client<typeof KindService> {
  return createClient(KindService, transport());
}

/** The caller's own access and second factor (StepUp: a token for one sensitive action). */
export function access(): Client<typeof AccessService> {
  return createClient(AccessService, transport());
}

/** The schema registry (GetSchema: a user kind's input type as a descriptor set). */
export function schemas(): Client<typeof SchemaService> {
  return createClient(SchemaService, transport());
}

export interface Failure {
  code: Code;
  message: string;
  field: string | null; // tidemesh-field: the request field an INVALID_ARGUMENT is about
  /** A step-up challenge (RFC 9470): the action and resource a second factor is wanted for. */
  stepUp: { action: string; resource: string } | null;
}

export function failure(error: unknown): Failure {
  const connect = ConnectError.from(error);
  const action = connect.metadata.get("tidemesh-step-up-action");
  const stepUp =
    connect.code === Code.Unauthenticated && action
      ? { action, resource: connect.metadata.get("tidemesh-step-up-resource") ?? "" }
      : null;
  return { code: connect.code, message: connect.rawMessage, field: connect.metadata.get("tidemesh-field"), stepUp };
}

/** A refused credential: the console asks for another one (a step-up challenge is not one: the
 * credential is good, the action wants a second factor too). */
export function refused(f: Failure): boolean {
  return f.code === Code.Unauthenticated && f.stepUp === null;
}

/** Worth reopening a stream after: the connection, not the request, failed. */
export function transient(f: Failure): boolean {
  return f.code === Code.Unavailable || f.code === Code.Unknown || f.code === Code.Internal || f.code === Code.Aborted;
}

export function describe(f: Failure): string {
  return `${Code[f.code]}: ${f.message}`;
}

const STATES: Record<number, [string, string, string]> = {
  [TaskState.UNSPECIFIED]: ["unknown", "?", ""],
  [TaskState.QUEUED]: ["queued", "…", ""],
  [TaskState.RUNNING]: ["running", "▶", "state-warn"],
  [TaskState.RETRYING]: ["retrying", "↻", "state-warn"],
  [TaskState.SUCCEEDED]: ["succeeded", "✓", "state-ok"],
  [TaskState.FAILED]: ["failed", "✗", "state-error"],
  [TaskState.CANCELLED]: ["cancelled", "⊘", "state-error"],
  [TaskState.DEAD_LETTERED]: ["dead-lettered", "☠", "state-error"],
};

export const STATE_NAMES = Object.values(STATES).map(([name]) => name).filter((name) => name !== "unknown");

export function stateName(state: TaskState): string {
  return (STATES[state] ?? STATES[TaskState.UNSPECIFIED])[0];
}

/** A state as symbol + word (never colour alone); the class only repeats it in colour. */
export function stateLabel(state: TaskState): HTMLElement {
  const [name, symbol, cls] = STATES[state] ?? STATES[TaskState.UNSPECIFIED];
  const span = document.createElement("span");
  if (cls) span.className = cls;
  span.textContent = `${symbol} ${name}`;
  return span;
}

export function terminal(state: TaskState): boolean {
  return state >= TaskState.SUCCEEDED;
}

export function className(priority: PriorityClass): string {
  switch (priority) {
    case PriorityClass.INTERACTIVE:
      return "interactive";
    case PriorityClass.BATCH:
      return "batch";
    default:
      return "standard";
  }
}

export function healthLabel(health: WorkerHealth): HTMLElement {
  const labels: Record<number, [string, string]> = {
    [WorkerHealth.ALIVE]: ["✓ alive", "state-ok"],
    [WorkerHealth.DRAINING]: ["↓ draining", "state-warn"],
    [WorkerHealth.DEAD]: ["✗ dead", "state-error"],
  };
  const [text, cls] = labels[health] ?? ["? unknown", ""];
  const span = document.createElement("span");
  span.className = cls;
  span.textContent = text;
  return span;
}

// A backend's circuit as a word and a symbol (closed, half_open, open), never colour alone.
export function circuitLabel(state: string): HTMLElement | string {
  if (!state) return "—";
  const cls = state === "closed" ? "state-ok" : state === "open" ? "state-error" : "state-warn";
  const symbol = state === "closed" ? "✓" : state === "open" ? "✗" : "◐";
  const span = document.createElement("span");
  span.className = cls;
  span.textContent = `${symbol} ${state}`;
  return span;
}

export function time(stamp: Timestamp | undefined): HTMLElement | string {
  if (!stamp) return "—";
  const date = timestampDate(stamp);
  const element = document.createElement("time");
  element.dateTime = date.toISOString();
  element.textContent = date.toLocaleTimeString(undefined, { hour12: false }) + `.${String(date.getMilliseconds()).padStart(3, "0")}`;
  element.title = date.toISOString();
  return element;
}

/** A dead letter's classification as its runbook names it: poison-input, dependency-down, … */
export function classificationName(classification: FailureClass): string {
  return classification ? FailureClass[classification].toLowerCase().replaceAll("_", "-") : "unclassified";
}

/** Where the console serves a record's runbook (`docs/runbooks/<name>.md`). */
export function runbookHref(runbook: string): string | null {
  const name = runbook.split("/").pop() ?? "";
  return /^[a-z0-9-]+\.md$/.test(name) ? `/console/runbooks/${name}` : null;
}
