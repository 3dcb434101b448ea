// What a handler sees of its assignment: the attempt, the resume point, the abort signal, and the
// calls that stream partial outputs and store checkpoints.
import { FatalError } from "./_errors.js";

/** Checkpoints are opaque to the mesh but capped (session.proto: at most 64 KiB). */
export const MAX_CHECKPOINT_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Order strings by code point, as Python sorts str (JS's default compares UTF-16 code units). */
export function compareCodePoints(a, b) {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  for (;;) {
    const x = left.next();
    const y = right.next();
    if (x.done || y.done) return x.done === y.done ? 0 : x.done ? -1 : 1;
    const diff = x.value.codePointAt(0) - y.value.codePointAt(0);
    if (diff !== 0) return diff;
  }
}

/**
 * JSON with sorted keys, no spaces and non-ASCII escaped: byte for byte what Python's
 * `json.dumps(value, sort_keys=True, separators=(",", ":"))` writes, so a checkpoint one
 * language's worker stores can be resumed by the other's.
 */
export function canonicalJson(value) {
  const sortKeys = (item) => {
    if (Array.isArray(item)) return item.map(sortKeys);
    if (item && typeof item === "object" && !(item instanceof Uint8Array)) {
      const sorted = {};
      for (const key of Object.keys(item).sort(compareCodePoints)) sorted[key] = sortKeys(item[key]);
      return sorted;
    }
    return item;
  };
  return JSON.stringify(sortKeys(value)).replace(
    /[\u007f-\uffff]/g,
    (ch) => "\\u" + ch.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

/** Checkpoint state as bytes: bytes as they are, a string as UTF-8, anything else as canonical JSON. */
export function checkpointBytes(state) {
  if (state instanceof Uint8Array) return state;
  if (typeof state === "string") return encoder.encode(state);
  return encoder.encode(canonicalJson(state));
}

/** The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`), or "". */
export function traceIdOf(traceparent) {
  const parts = (traceparent || "").split("-");
  return parts.length === 4 ? parts[1] : "";
}

export class TaskContext {
  /** @internal — the worker builds one per assignment. */
  constructor({ assignment, signal, logger, emitPartial, checkpoint }) {
    const spec = assignment.spec;
    this.assignmentId = assignment.assignmentId;
    this.taskId = spec?.taskId ?? "";
    this.kind = spec?.kind ?? "";
    this.tenant = spec?.tenant ?? "";
    this.spec = spec;
    this.step = assignment.step;
    this.stepIndex = assignment.stepIndex;
    this.attempt = assignment.attempt;
    this.resumeFrom = assignment.resumeFrom;
    this.resumeState = assignment.checkpoint;
    this.stepDeadline = assignment.stepDeadline;
    this.traceparent = assignment.traceparent;
    this.traceId = traceIdOf(assignment.traceparent);
    this.signal = signal;
    this.log = logger;
    this._emitPartial = emitPartial;
    this._checkpoint = checkpoint;
  }

  /** True once the mesh cancelled the assignment or fenced it out. */
  get cancelled() {
    return this.signal.aborted;
  }

  /** The resume state parsed as JSON (undefined when there is none). */
  resumeJson() {
    if (this.resumeState === undefined) return undefined;
    try {
      return JSON.parse(decoder.decode(this.resumeState));
    } catch (err) {
      throw new FatalError(`the checkpoint to resume from is not UTF-8 JSON: ${err.message}`, {
        errorClass: "invalid_checkpoint",
        cause: err,
      });
    }
  }

  /**
   * Stream a partial output (a message of the kind's output type, or its init object) with the
   * producer's confidence 0..1. `index` (1, 2, ...) is the partial's place in the step's output: a
   * handler resuming from a checkpoint gives it, so a partial an earlier attempt already stored is
   * skipped, not sent twice; without it partials are numbered after earlier attempts' (`resumeFrom`).
   * Throws the abort reason once the assignment is cancelled or stale.
   */
  emitPartial(output, confidence = 0, index = undefined) {
    this.signal.throwIfAborted();
    return this._emitPartial(output, confidence, index);
  }

  /** Store resume state: bytes, a string, or a JSON-able object (written as canonical JSON). */
  checkpoint(state) {
    this.signal.throwIfAborted();
    const bytes = checkpointBytes(state);
    if (bytes.length > MAX_CHECKPOINT_BYTES) {
      throw new FatalError(`checkpoint of ${bytes.length} bytes is over the ${MAX_CHECKPOINT_BYTES}-byte limit`, {
        errorClass: "invalid_checkpoint",
      });
    }
    return this._checkpoint(bytes);
  }
}
