// The browser side of tests/browser: connect-web's gRPC-Web transport against tidemesh's Envoy.
// Each function returns plain JSON so a test (or a person at the console) can read what the page saw.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { GatewayService } from "./gen/mesh/v1/gateway_pb.js";

type Gateway = Client<typeof GatewayService>;

export interface Target {
  baseUrl: string; // Envoy's public address, e.g. http://127.0.0.1:8080
  apiKey?: string; // sent as x-api-key (one of the two credential forms the gateway accepts)
}

export interface ErrorReport {
  code: string;
  message: string;
  field: string | null;
  errorClass: string | null;
}

function gateway(target: Target, useBinaryFormat = true): Gateway {
  return createClient(GatewayService, createGrpcWebTransport({ baseUrl: target.baseUrl, useBinaryFormat }));
}

function credential(target: Target): Record<string, string> {
  return target.apiKey ? { "x-api-key": target.apiKey } : {};
}

function report(error: unknown): ErrorReport {
  const connect = ConnectError.from(error);
  // A unary error is trailers-only: its details arrive as response headers, readable only if CORS exposes them.
  return {
    code: Code[connect.code],
    message: connect.rawMessage,
    field: connect.metadata.get("tidemesh-field"),
    errorClass: connect.metadata.get("tidemesh-error-class"),
  };
}

export async function meshStatus(target: Target): Promise<{ queues: number; workers: number }> {
  const reply = await gateway(target).getMeshStatus({}, { headers: credential(target) });
  return { queues: reply.queues.length, workers: reply.workers.length };
}

export interface StreamTask {
  tenant: string;
  text: string;
  chunks: number;
  chunkDelayMs: number;
}

export async function submitStream(
  target: Target,
  task: StreamTask,
): Promise<{ taskId: string; deduplicated: boolean; sequence: string }> {
  const reply = await gateway(target).submitTask(
    {
      spec: {
        tenant: task.tenant,
        kind: "stream",
        payload: {
          body: { case: "stream", value: { text: task.text, chunks: task.chunks, chunkDelayMs: task.chunkDelayMs } },
        },
      },
    },
    { headers: credential(target) },
  );
  return { taskId: reply.taskId, deduplicated: reply.deduplicated, sequence: reply.sequence.toString() };
}

export interface WatchedEvent {
  sequence: string; // uint64 as a decimal string (JSON has no bigint)
  state: number;
  text: string | null;
  final: boolean;
}

export interface WatchReport {
  streamId: string | null;
  refreshed: boolean | ErrorReport | null;
  events: WatchedEvent[];
}

// Watches a task to its end. With `refresh`, the stream's credential is refreshed in-band as soon as
// the response headers name the stream (tidemesh-stream-id), which needs that header exposed by CORS.
export async function watch(
  target: Target,
  taskId: string,
  afterSequence = "0",
  refresh = false,
): Promise<WatchReport> {
  const client = gateway(target);
  const result: WatchReport = { streamId: null, refreshed: null, events: [] };
  let refreshing: Promise<void> | null = null;
  const onHeader = (headers: Headers): void => {
    result.streamId = headers.get("tidemesh-stream-id");
    if (refresh && result.streamId) {
      refreshing = client
        .refreshStreamCredential({ streamId: result.streamId }, { headers: credential(target) })
        .then(
          () => void (result.refreshed = true),
          (error: unknown) => void (result.refreshed = report(error)),
        );
    }
  };
  const stream = client.watchTask(
    { taskId, afterSequence: BigInt(afterSequence) },
    { headers: credential(target), onHeader },
  );
  for await (const { event } of stream) {
    if (!event) continue;
    const output = event.output?.body;
    result.events.push({
      sequence: event.sequence.toString(),
      state: event.state,
      text: output?.case === "text" ? output.value : null,
      final: event.final,
    });
  }
  if (refreshing) await refreshing;
  return result;
}

export async function submitUnknownKind(target: Target, tenant: string): Promise<ErrorReport | null> {
  try {
    await gateway(target).submitTask({ spec: { tenant, kind: "teleport" } }, { headers: credential(target) });
  } catch (error) {
    return report(error);
  }
  return null;
}

// The same unary call in gRPC-Web's JSON codec (application/grpc-web+json), which tidemesh does not speak.
export async function meshStatusAsJson(target: Target): Promise<ErrorReport | null> {
  try {
    await gateway(target, false).getMeshStatus({}, { headers: credential(target) });
  } catch (error) {
    return report(error);
  }
  return null;
}

// A REST call: which gateway replica answered (x-tidemesh-replica, exposed by CORS).
export async function replica(target: Target): Promise<string | null> {
  const response = await fetch(`${target.baseUrl}/healthz`, { headers: credential(target) });
  return response.headers.get("x-tidemesh-replica");
}

const api = { meshStatus, submitStream, watch, submitUnknownKind, meshStatusAsJson, replica };
(globalThis as { tidemesh?: typeof api }).tidemesh = api;
document.getElementById("state")?.setAttribute("data-ready", "true");
