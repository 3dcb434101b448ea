// What every view gets from the shell, and what it gives back.
import type { Failure } from "./api.js";

export interface Shell {
  navigate(path: string): void;
  /** The mesh refused the credential mid-session: back to sign-in, saying why. */
  refused(failure: Failure): void;
  /** The footer's connection line (a polite status region). */
  connection(text: string): void;
}

export interface View {
  title: string;
  /** Stop streams and timers; called before the next view renders. */
  dispose(): void;
}

/** Waits `ms`, or less when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });
}

/** Reconnect delays: 0.5 s, 1 s, 2 s, … at most 10 s. */
export function backoff(attempt: number): number {
  return Math.min(10_000, 500 * 2 ** attempt);
}
