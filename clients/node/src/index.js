// @tidemesh/worker — serve tidemesh task kinds from Node.js over the language-neutral worker
// protocol (mesh.v1.WorkerSessionService, proto/mesh/v1/session.proto).
export { Worker, SDK, SDK_VERSION } from "./_worker.js";
export { TaskContext, canonicalJson, compareCodePoints, MAX_CHECKPOINT_BYTES } from "./_context.js";
export {
  AssignmentAborted,
  ConfigError,
  FatalError,
  RetryableError,
  SessionRefused,
  WorkerError,
  classifyFailure,
} from "./_errors.js";
export { authorizationValue, channelCredentials, loadCredential } from "./_credentials.js";
export { jsonLogger } from "./_log.js";
