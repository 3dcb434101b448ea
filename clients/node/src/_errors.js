// Errors a handler throws to say how its failure is reported, and the SDK's own errors.
//
//   Error (any other)   -> StepFailure retryable=true, error_class = err.errorClass ?? "bug"
//   FatalError          -> StepFailure retryable=false, error_class = err.errorClass ?? "fatal"
//   WorkerError         the SDK's own: bad configuration, or the mesh refused the session
//     ConfigError       a missing endpoint, an unreadable CA or credential file
//     SessionRefused    the mesh ended the session with a status that retrying cannot fix

/** A failure that retrying cannot fix: reported with retryable=false, so the task fails (or dead-letters) now. */
export class FatalError extends Error {
  constructor(message, { errorClass = "fatal", cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "FatalError";
    this.errorClass = errorClass;
  }
}

/** A failure worth retrying with a class of its own (a plain Error is retried as class "bug"). */
export class RetryableError extends Error {
  constructor(message, { errorClass = "retryable", cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RetryableError";
    this.errorClass = errorClass;
  }
}

export class WorkerError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "WorkerError";
  }
}

export class ConfigError extends WorkerError {
  constructor(message, options) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** The mesh ended the session for a reason a reconnect would only repeat (bad attach, bad credential). */
export class SessionRefused extends WorkerError {
  constructor(code, details) {
    super(`the mesh refused the worker session: ${details} (gRPC status ${code})`);
    this.name = "SessionRefused";
    this.code = code;
    this.details = details;
  }
}

/** Why an assignment's signal fired: the mesh cancelled it, or its chain moved on (a stale report). */
export class AssignmentAborted extends Error {
  constructor(reason, { stale = false } = {}) {
    super(stale ? `assignment is stale: ${reason}` : `assignment cancelled: ${reason}`);
    this.name = "AbortError";
    this.stale = stale;
  }
}

const MAX_MESSAGE = 4096;

/** `{errorClass, message, retryable}` for what a handler threw. */
export function classifyFailure(err) {
  if (err instanceof FatalError) {
    return { errorClass: err.errorClass || "fatal", message: err.message.slice(0, MAX_MESSAGE), retryable: false };
  }
  // As the Python SDK: an unclassified error's message names its type ("TypeError: …").
  const classified = err && typeof err.errorClass === "string" && err.errorClass;
  const text = err instanceof Error ? err.message : String(err);
  const message = (classified || !(err instanceof Error) ? text : `${err.name}: ${text}`).slice(0, MAX_MESSAGE);
  const retryable = !(err && err.retryable === false);
  return { errorClass: classified || "bug", message, retryable };
}
