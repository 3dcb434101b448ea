// The worker side of mesh.v1.WorkerSessionService.Connect (proto/mesh/v1/session.proto).
//
// One bidirectional stream per session. Every report (partial, checkpoint, result, failure) is
// kept until the mesh confirms it with a report_ack, and sent again after a reconnect that resumes
// the session — so a dropped stream neither loses nor (the mesh ignores known sequences) duplicates
// work. A report_ack with `stale` or a CancelAssignment fires the assignment's AbortSignal.
import net from "node:net";
import os from "node:os";
import { once } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConnectRequestSchema, ConnectResponseSchema } from "./gen/mesh/v1/session_pb.js";
import { TaskContext } from "./_context.js";
import { authorizationValue, channelCredentials, loadCredential } from "./_credentials.js";
import { AssignmentAborted, ConfigError, FatalError, SessionRefused, classifyFailure } from "./_errors.js";
import { asLogger } from "./_log.js";

export const SDK_VERSION = "0.1.0";
export const SDK = `node/${SDK_VERSION}`;
const CONNECT = "/mesh.v1.WorkerSessionService/Connect";
const DEFAULT_HEARTBEAT_MS = 5000;
// How long to wait for the mesh to close its side after the worker ended the request stream.
const CLOSE_GRACE_MS = 5000;
// Statuses a reconnect would only repeat: give up and reject run().
const REFUSED = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.UNIMPLEMENTED,
]);

const State = Object.freeze({ NEW: "new", RUNNING: "running", DRAINING: "draining", CLOSED: "closed" });

function durationMs(duration) {
  if (!duration) return 0;
  return Number(duration.seconds) * 1000 + Math.floor(duration.nanos / 1e6);
}

function isSchema(value) {
  return Boolean(value) && value.kind === "message" && typeof value.typeName === "string";
}

/** One assignment this worker holds: the handler's abort controller and its unconfirmed reports. */
class Held {
  constructor(assignment) {
    this.id = assignment.assignmentId;
    this.controller = new AbortController();
    this.resumeFrom = assignment.resumeFrom;
    this.nextPartial = assignment.resumeFrom;
    this.nextCheckpoint = 0;
    this.pending = new Map(); // report key ("p:3", "c:1", "final") -> ConnectRequest, in send order
    this.settled = false; // the handler returned or threw
    this.cancelled = false;
    this.stale = false;
  }
}

/**
 * TLS names no IP address in SNI (RFC 6066; Node warns when asked to): for an IP endpoint the
 * handshake names `localhost`, which the mesh's edge certificate covers along with 127.0.0.1.
 */
function ipEndpointOptions(endpoint) {
  const host = endpoint.startsWith("[") ? endpoint.slice(1, endpoint.indexOf("]")) : endpoint.split(":")[0];
  return net.isIP(host) ? { "grpc.ssl_target_name_override": "localhost" } : {};
}

export class Worker {
  /**
   * @param {object} options
   * @param {string} [options.endpoint] host:port of the mesh's front door (default $TIDEMESH_ENDPOINT)
   * @param {string} [options.ca] PEM file of the mesh's root CA (default $TIDEMESH_CA, else the system roots)
   * @param {string} [options.credential] API key or JWT (default $TIDEMESH_API_KEY, else options.credentialFile
   *   or $TIDEMESH_API_KEY_FILE); never pass it on the command line
   */
  constructor(options = {}) {
    const env = options.env ?? process.env;
    this.endpoint = options.endpoint || env.TIDEMESH_ENDPOINT || "";
    if (!this.endpoint) throw new ConfigError("endpoint: the mesh's host:port is required (or set TIDEMESH_ENDPOINT)");
    this.name = options.name || `node-${os.hostname()}-${process.pid}`;
    this.labels = { ...(options.labels ?? {}) };
    this.capacity = options.capacity ?? 1;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) {
      throw new ConfigError(`capacity: a whole number of at least 1, got ${options.capacity}`);
    }
    this.buildId = options.buildId ?? "";
    this.reconnect = { initialMs: 100, maxMs: 5000, ...(options.reconnect ?? {}) };
    this.log = asLogger(options.logger).child({ worker: this.name });
    this._credential = loadCredential({ ...options, env });
    this._channelCredentials = channelCredentials({ ...options, env });
    this._channelOptions = { ...ipEndpointOptions(this.endpoint), ...(options.channelOptions ?? {}) };
    this._kinds = new Map();
    this._held = new Map();
    this._state = State.NEW;
    this._call = null;
    this._attached = false;
    this._closing = false;
    this._sessionId = "";
    this.workerId = "";
    this._heartbeatMs = DEFAULT_HEARTBEAT_MS;
    this._heartbeatTimer = null;
    this._retryTimer = null;
    this._closeTimer = null;
    this._failures = 0;
  }

  /**
   * Serve `kind`: `handler(input, ctx)` gets the decoded input message and returns the output
   * message (or its init object). `steps` limits the kind's steps this worker runs (default all);
   * `schemaVersions` the input schema versions the handler reads (default every registered one).
   */
  task(kind, { input, output, steps = [], schemaVersions = [] } = {}, handler) {
    if (typeof kind !== "string" || !kind) throw new ConfigError("kind: a non-empty name is required");
    if (!isSchema(input)) throw new ConfigError(`${kind}: input must be a generated message schema (…Schema)`);
    if (!isSchema(output)) throw new ConfigError(`${kind}: output must be a generated message schema (…Schema)`);
    if (typeof handler !== "function") throw new ConfigError(`${kind}: the handler must be a function`);
    if (this._kinds.has(kind)) throw new ConfigError(`${kind}: a handler is already registered for this kind`);
    if (this._state !== State.NEW) throw new ConfigError(`${kind}: register handlers before run()`);
    this._kinds.set(kind, { kind, input, output, steps: [...steps], schemaVersions: [...schemaVersions], handler });
    return this;
  }

  /** The session id the mesh gave (empty before the first attach). */
  get sessionId() {
    return this._sessionId;
  }

  /**
   * Attach and serve until drained (by the mesh, `shutdown()` or the first SIGTERM/SIGINT when
   * `signals`); a second signal exits the process at once. Rejects when the mesh refuses the session.
   */
  run({ signals = true } = {}) {
    if (this._state !== State.NEW) throw new ConfigError("run() may be called once per Worker");
    if (this._kinds.size === 0) throw new ConfigError("register at least one kind with task() before run()");
    this._state = State.RUNNING;
    this._client = new grpc.Client(this.endpoint, this._channelCredentials, this._channelOptions);
    const finished = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    if (signals) this._installSignals();
    this._connect();
    return finished;
  }

  /** Stop taking work; end the session once the running assignments are done and confirmed. Idempotent. */
  shutdown(reason = "shutdown") {
    if (this._state === State.RUNNING) {
      this._state = State.DRAINING;
      this.log.info("draining: finishing running assignments, taking no new ones", {
        reason,
        running: this._runningIds().length,
      });
      this._heartbeat(); // tells the mesh now, not an interval later, to send nothing new
    }
    this._maybeClose();
  }

  _installSignals() {
    let seen = 0;
    this._onSignal = (signal) => {
      seen += 1;
      if (seen === 1) {
        this.shutdown(signal);
        return;
      }
      this.log.warn("second signal: exiting now", { signal });
      process.exit(128 + (os.constants.signals[signal] ?? 1));
    };
    process.on("SIGTERM", this._onSignal);
    process.on("SIGINT", this._onSignal);
  }

  _removeSignals() {
    if (!this._onSignal) return;
    process.off("SIGTERM", this._onSignal);
    process.off("SIGINT", this._onSignal);
  }

  // --- the stream -----------------------------------------------------------------------------

  _connect() {
    this._retryTimer = null;
    const metadata = new grpc.Metadata();
    if (this._credential) metadata.set("authorization", authorizationValue(this._credential));
    const call = this._client.makeBidiStreamRequest(
      CONNECT,
      (message) => Buffer.from(toBinary(ConnectRequestSchema, message)),
      (bytes) => fromBinary(ConnectResponseSchema, bytes),
      metadata,
    );
    this._call = call;
    call.on("data", (response) => {
      if (this._call === call) this._onResponse(response);
    });
    call.on("error", () => {}); // the status event below carries the outcome
    call.on("status", (status) => {
      if (this._call === call) this._onStreamEnd(status);
    });
    // The handler's types go with the offer: the mesh refuses a kind declared with other ones.
    const offers = [...this._kinds.values()].map((k) => ({
      kind: k.kind,
      schemaVersions: k.schemaVersions,
      steps: k.steps,
      inputType: k.input.typeName,
      outputType: k.steps.length ? "" : k.output.typeName, // a step subset may return an intermediate type
    }));
    this._write({
      case: "attach",
      value: {
        sessionId: this._sessionId,
        workerName: this.name,
        kinds: offers,
        labels: this.labels,
        capacity: this.capacity,
        buildId: this.buildId,
        sdk: SDK,
      },
    });
  }

  _write(body) {
    if (!this._call) return true;
    return this._call.write(create(ConnectRequestSchema, { body }));
  }

  _onStreamEnd(status) {
    const wasAttached = this._attached;
    this._call = null;
    this._attached = false;
    this._stopHeartbeat();
    if (this._closing) {
      this._finish();
      return;
    }
    if (REFUSED.has(status.code)) {
      this._abortAll("the session was refused", true);
      this._finish(new SessionRefused(status.code, status.details));
      return;
    }
    if (this._state === State.DRAINING && this._held.size === 0) {
      this._finish();
      return;
    }
    this._failures = wasAttached ? 1 : this._failures + 1;
    const ceiling = Math.min(this.reconnect.maxMs, this.reconnect.initialMs * 2 ** (this._failures - 1));
    const delay = Math.round(ceiling * (0.5 + Math.random() / 2));
    this.log.warn("session stream ended; reconnecting", {
      code: status.code,
      details: status.details,
      retry_in_ms: delay,
      session_id: this._sessionId,
    });
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _onResponse(response) {
    const { case: kind, value } = response.body;
    switch (kind) {
      case "attached":
        return this._onAttached(value);
      case "assignment":
        return this._onAssignment(value);
      case "cancel":
        return this._onCancel(value);
      case "drain":
        return this.shutdown("drain requested by the mesh");
      case "reportAck":
        return this._onReportAck(value);
      default:
        this.log.debug("ignoring a message this SDK does not handle", { message: kind });
    }
  }

  _onAttached(attached) {
    const resuming = Boolean(this._sessionId);
    if (resuming && !attached.resumed) {
      // The resume window passed: the mesh gave our assignments to someone else.
      this._abortAll("the session was not resumed", true);
    }
    this._sessionId = attached.sessionId;
    this.workerId = attached.workerId;
    this._heartbeatMs = durationMs(attached.heartbeatInterval) || DEFAULT_HEARTBEAT_MS;
    this._attached = true;
    this._failures = 0;
    this.log.info(resuming ? "session resumed" : "attached", {
      session_id: this._sessionId,
      worker_id: this.workerId,
      resumed: attached.resumed,
      unconfirmed: [...this._held.values()].reduce((n, held) => n + held.pending.size, 0),
    });
    for (const held of this._held.values()) {
      for (const report of held.pending.values()) this._write(report);
    }
    this._startHeartbeat();
    if (this._state === State.DRAINING) this._heartbeat();
    this._maybeClose();
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this._heartbeatTimer = setInterval(() => this._heartbeat(), this._heartbeatMs);
  }

  _heartbeat() {
    if (!this._attached || this._closing) return;
    const draining = this._state === State.DRAINING;
    this._write({ case: "heartbeat", value: { running: this._runningIds(), draining } });
  }

  _stopHeartbeat() {
    if (this._heartbeatTimer) clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  _runningIds() {
    return [...this._held.values()].filter((held) => !held.settled).map((held) => held.id);
  }

  // --- assignments ----------------------------------------------------------------------------

  _onAssignment(assignment) {
    if (this._held.has(assignment.assignmentId)) return; // sent again on resume: already ours
    if (this._state !== State.RUNNING) {
      // Draining: leave it unreported; the mesh hands it to another worker when this session ends.
      this.log.info("draining: not starting a new assignment", { assignment_id: assignment.assignmentId });
      return;
    }
    const registration = this._kinds.get(assignment.spec?.kind ?? "");
    const held = new Held(assignment);
    this._held.set(held.id, held);
    if (!registration) {
      this._settle(held, {
        error: new FatalError(`this worker serves no kind ${assignment.spec?.kind}`, { errorClass: "no_handler" }),
      });
      return;
    }
    void this._execute(held, registration, assignment);
  }

  async _execute(held, registration, assignment) {
    const logger = this.log.child({
      task_id: assignment.spec?.taskId ?? "",
      trace_id: (assignment.traceparent || "").split("-")[1] ?? "",
      assignment_id: held.id,
      attempt: assignment.attempt,
    });
    const ctx = new TaskContext({
      assignment,
      signal: held.controller.signal,
      logger,
      emitPartial: (output, confidence, index) => this._emitPartial(held, registration, output, confidence, index),
      checkpoint: (bytes) => this._checkpoint(held, bytes),
    });
    let outcome;
    try {
      const input = this._decodeInput(registration, assignment);
      const output = await registration.handler(input, ctx);
      outcome = { outputs: [this._encodeOutput(registration, output)] };
    } catch (error) {
      outcome = { error };
    }
    this._settle(held, outcome, logger);
  }

  _settle(held, outcome, logger = this.log) {
    held.settled = true;
    if (held.stale) {
      logger.info("stopped a stale assignment");
      this._forget(held);
      return;
    }
    if (held.cancelled) {
      this._write({ case: "cancelAck", value: { assignmentId: held.id } });
      logger.info("cancelled");
      this._forget(held);
      return;
    }
    if (outcome.error === undefined) {
      this._report(held, "final", { case: "result", value: { assignmentId: held.id, outputs: outcome.outputs } });
      return;
    }
    const failure = classifyFailure(outcome.error);
    logger.warn("step failed", { error_class: failure.errorClass, retryable: failure.retryable, error: failure.message });
    this._report(held, "final", { case: "failure", value: { assignmentId: held.id, ...failure } });
  }

  _decodeInput(registration, assignment) {
    const carried = assignment.stepIndex > 0 && assignment.carry.length > 0;
    const body = carried ? assignment.carry[0].body : assignment.spec?.payload?.body;
    const where = carried ? "carry[0]" : "spec.payload";
    if (!body || body.case !== "custom") {
      throw new FatalError(`${where}: expected a custom (google.protobuf.Any) payload, got ${body?.case ?? "none"}`, {
        errorClass: "schema_mismatch",
      });
    }
    const message = anyUnpack(body.value, registration.input);
    if (message === undefined) {
      throw new FatalError(`${where}: carries ${body.value.typeUrl}, the handler reads ${registration.input.typeName}`, {
        errorClass: "schema_mismatch",
      });
    }
    return message;
  }

  _encodeOutput(registration, output) {
    const schema = registration.output;
    if (output && typeof output.$typeName === "string" && output.$typeName !== schema.typeName) {
      throw new FatalError(`the handler returned ${output.$typeName}, the kind declares ${schema.typeName}`, {
        errorClass: "invalid_output",
      });
    }
    const message = output && output.$typeName ? output : create(schema, output ?? {});
    return { body: { case: "custom", value: anyPack(schema, message) } };
  }

  _emitPartial(held, registration, output, confidence, index) {
    if (index !== undefined) {
      if (!Number.isInteger(index) || index < 1) throw new RangeError(`index: a whole number from 1, got ${index}`);
      if (index <= held.resumeFrom) return Promise.resolve(); // an earlier attempt stored this one
      held.nextPartial = index;
    } else {
      held.nextPartial += 1;
    }
    const sequence = held.nextPartial;
    this._report(held, `p:${sequence}`, {
      case: "partial",
      value: { assignmentId: held.id, sequence, output: this._encodeOutput(registration, output), confidence },
    });
    return this._flowControl();
  }

  _checkpoint(held, bytes) {
    const sequence = ++held.nextCheckpoint;
    this._report(held, `c:${sequence}`, { case: "checkpoint", value: { assignmentId: held.id, sequence, state: bytes } });
    return this._flowControl();
  }

  /** Kept until confirmed; written now when the session is up, else on the next attach. */
  _report(held, key, body) {
    held.pending.set(key, body);
    if (this._attached) this._write(body);
  }

  /** Resolves once the stream can take more (the handler awaits this between reports). */
  async _flowControl() {
    const call = this._call;
    if (call && this._attached && call.writableNeedDrain) await once(call, "drain");
  }

  _onReportAck(ack) {
    const held = this._held.get(ack.assignmentId);
    if (!held) return;
    const { case: which, value } = ack.report;
    const key = which === "partial" ? `p:${value}` : which === "checkpoint" ? `c:${value}` : "final";
    held.pending.delete(key);
    if (ack.stale && !held.stale) {
      held.stale = true;
      held.pending.clear();
      held.controller.abort(new AssignmentAborted("the task moved on", { stale: true }));
      this.log.info("report was stale: stopping the assignment", { assignment_id: held.id });
      if (held.settled) this._forget(held);
      return;
    }
    if (which === "final") this._forget(held);
  }

  _onCancel(cancel) {
    const held = this._held.get(cancel.assignmentId);
    if (!held || held.settled) {
      // Not running here (any more): nothing to stop, say so at once.
      this._write({ case: "cancelAck", value: { assignmentId: cancel.assignmentId } });
      return;
    }
    held.cancelled = true;
    held.controller.abort(new AssignmentAborted(cancel.reason || "cancelled"));
  }

  _abortAll(reason, stale) {
    for (const held of this._held.values()) {
      held.stale = stale;
      held.pending.clear();
      if (!held.controller.signal.aborted) held.controller.abort(new AssignmentAborted(reason, { stale }));
      if (held.settled) this._held.delete(held.id);
    }
  }

  _forget(held) {
    this._held.delete(held.id);
    this._maybeClose();
  }

  // --- closing --------------------------------------------------------------------------------

  _maybeClose() {
    if (this._state !== State.DRAINING || this._closing || this._held.size > 0) return;
    if (!this._call) {
      if (this._retryTimer) clearTimeout(this._retryTimer);
      this._finish();
      return;
    }
    if (!this._attached) return; // attach under way: close once it answers
    this._closing = true;
    this._stopHeartbeat();
    this._call.end();
    const call = this._call;
    this._closeTimer = setTimeout(() => call.cancel(), CLOSE_GRACE_MS);
  }

  _finish(error) {
    if (this._state === State.CLOSED) return;
    this._state = State.CLOSED;
    this._stopHeartbeat();
    for (const timer of [this._retryTimer, this._closeTimer]) if (timer) clearTimeout(timer);
    this._removeSignals();
    this._client.close();
    if (error) {
      this.log.error("worker stopped", { error: error.message });
      this._reject(error);
    } else {
      this.log.info("worker stopped");
      this._resolve();
    }
  }
}
