import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { TaskSpec } from "./gen/mesh/v1/task_pb.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

export declare const SDK: string;
export declare const SDK_VERSION: string;
export declare const MAX_CHECKPOINT_BYTES: number;

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface WorkerOptions {
  /** host:port of the mesh's front door; default $TIDEMESH_ENDPOINT. */
  endpoint?: string;
  /** PEM file of the mesh's root CA; default $TIDEMESH_CA, else the system's roots. */
  ca?: string;
  /** Plaintext (local tests only). */
  insecure?: boolean;
  /** API key (tmk_…) or JWT; default $TIDEMESH_API_KEY. Never take it from argv. */
  credential?: string;
  /** File holding the credential; default $TIDEMESH_API_KEY_FILE. */
  credentialFile?: string;
  name?: string;
  labels?: Record<string, string>;
  /** Steps run at once (default 1). */
  capacity?: number;
  buildId?: string;
  reconnect?: { initialMs?: number; maxMs?: number };
  logger?: Partial<Logger> & { log?: (...args: unknown[]) => void };
  channelOptions?: Record<string, unknown>;
  env?: Record<string, string | undefined>;
}

export declare class TaskContext<Out extends DescMessage = DescMessage> {
  readonly assignmentId: string;
  readonly taskId: string;
  readonly kind: string;
  readonly tenant: string;
  readonly spec: TaskSpec | undefined;
  readonly step: string;
  readonly stepIndex: number;
  /** 1 on the first delivery. */
  readonly attempt: number;
  /** Partials earlier attempts streamed; new ones are numbered after them. */
  readonly resumeFrom: number;
  /** The latest checkpoint an earlier attempt stored. */
  readonly resumeState: Uint8Array | undefined;
  readonly stepDeadline: Timestamp | undefined;
  readonly traceparent: string;
  readonly traceId: string;
  /** Fires on CancelAssignment or a stale report. */
  readonly signal: AbortSignal;
  readonly cancelled: boolean;
  readonly log: Logger;
  resumeJson(): unknown;
  emitPartial(output: MessageShape<Out> | MessageInitShape<Out>, confidence?: number, index?: number): Promise<void>;
  checkpoint(state: Uint8Array | string | object): Promise<void>;
}

export interface TaskDeclaration<In extends DescMessage, Out extends DescMessage> {
  input: In;
  output: Out;
  steps?: string[];
  schemaVersions?: number[];
}

export declare class Worker {
  constructor(options?: WorkerOptions);
  readonly endpoint: string;
  readonly name: string;
  readonly workerId: string;
  readonly sessionId: string;
  readonly log: Logger;
  task<In extends DescMessage, Out extends DescMessage>(
    kind: string,
    declaration: TaskDeclaration<In, Out>,
    handler: (
      input: MessageShape<In>,
      ctx: TaskContext<Out>,
    ) => Promise<MessageShape<Out> | MessageInitShape<Out>> | MessageShape<Out> | MessageInitShape<Out>,
  ): this;
  run(options?: { signals?: boolean }): Promise<void>;
  shutdown(reason?: string): void;
}

export declare class WorkerError extends Error {}
export declare class ConfigError extends WorkerError {}
export declare class SessionRefused extends WorkerError {
  readonly code: number;
  readonly details: string;
}
export declare class FatalError extends Error {
  constructor(message: string, options?: { errorClass?: string; cause?: unknown });
  readonly errorClass: string;
}
export declare class RetryableError extends Error {
  constructor(message: string, options?: { errorClass?: string; cause?: unknown });
  readonly errorClass: string;
}
export declare class AssignmentAborted extends Error {
  readonly stale: boolean;
}
export declare function classifyFailure(err: unknown): { errorClass: string; message: string; retryable: boolean };
export declare function canonicalJson(value: unknown): string;
export declare function compareCodePoints(a: string, b: string): number;
export declare function authorizationValue(credential: string): string;
export declare function loadCredential(options?: { credential?: string; credentialFile?: string; env?: Record<string, string | undefined> }): string;
export declare function channelCredentials(options?: { ca?: string; insecure?: boolean; env?: Record<string, string | undefined> }): unknown;
export declare function jsonLogger(options?: { level?: string; fields?: Record<string, unknown>; write?: (line: string) => void }): Logger;
