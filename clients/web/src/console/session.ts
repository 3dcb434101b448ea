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
