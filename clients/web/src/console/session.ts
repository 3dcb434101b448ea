// The signed-in credential: kept in sessionStorage (this tab only, gone when it closes), never in a
// URL, a cookie or the console's output.
const KEY = "tidemesh.credential";

export function credential(): string | null {
  return sessionStorage.getItem(KEY);
}

export function remember(value: string): void {
  sessionStorage.setItem(KEY, value);
}

export function forget(): void {
  sessionStorage.removeItem(KEY);
}

/** The authorization header value: an API key (tmk_…) or else a JWT. */
export function authorization(value: string): string {
  return value.startsWith("tmk_") ? `ApiKey ${value}` : `Bearer ${value}`;
}

// The streams open now (their tidemesh-stream-id), so a renewed credential can be moved onto each
// of them in-band (RefreshStreamCredential) instead of the streams being closed and reopened.
const openStreams = new Set<string>();

/** Call options' onHeader for a stream, and a release for when it ends. */
export function trackStream(): { onHeader: (headers: Headers) => void; release: () => void } {
  let id: string | null = null;
  return {
    onHeader(headers) {
      id = headers.get("tidemesh-stream-id");
      if (id) openStreams.add(id);
    },
    release() {
      if (id) openStreams.delete(id);
    },
  };
}

export function streamIds(): string[] {
  return [...openStreams];
}
