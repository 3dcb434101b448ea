// The tidemesh web console: one page under /console/, every view at its own URL (the gateway
// answers index.html for each). Views render into <main>; navigation uses the History API.
import { describe, type Failure } from "./api.js";
import { h } from "./dom.js";
import { credential, forget } from "./session.js";
import { renewCredential } from "./renew.js";
import { setUpThemeSwitch } from "./theme.js";
import type { Shell, View } from "./view.js";
import { deadLetter } from "./views/deadletter.js";
import { dlq } from "./views/dlq.js";
import { inference } from "./views/inference.js";
import { overview } from "./views/overview.js";
import { signIn } from "./views/signin.js";
import { submit } from "./views/submit.js";
import { task } from "./views/task.js";
import { tasks } from "./views/tasks.js";
import { workers } from "./views/workers.js";

const BASE = "/console/";
const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
const signOut = document.getElementById("sign-out") as HTMLButtonElement;
const renew = document.getElementById("renew") as HTMLButtonElement;
const connectionLine = document.getElementById("connection") as HTMLElement;
let current: View | null = null;

const shell: Shell = {
  navigate(path: string): void {
    history.pushState(null, "", path);
    route(true);
  },
  refused(f: Failure): void {
    forget();
    route(true, `The mesh refused your credential (${describe(f)}). Sign in again.`);
  },
  connection(text: string): void {
    if (connectionLine.textContent !== text) connectionLine.textContent = text;
  },
};

function notFound(text: string): View {
  main.replaceChildren(
    h("h1", { tabindex: "-1" }, "Not found"),
    h("p", {}, text, " ", h("a", { href: BASE }, "Go to the overview"), "."),
  );
  return { title: "Not found", dispose() {} };
}

function view(path: string): View {
  const rest = path.startsWith(BASE) ? path.slice(BASE.length) : "";
  const [section, id, ...extra] = rest.split("/").filter(Boolean).map(decodeURIComponent);
  if (!section) return overview(main, shell);
  if (section === "tasks" && !id) return tasks(main, shell);
  if (section === "tasks" && id && !extra.length) return task(main, shell, id);
  if (section === "submit" && !id) return submit(main, shell);
  if (section === "workers" && !id) return workers(main, shell);
  if (section === "inference" && !id) return inference(main, shell);
  if (section === "dlq" && !id) return dlq(main, shell);
  if (section === "dlq" && id && !extra.length) return deadLetter(main, shell, id);
  return notFound(`No console view at ${path}.`);
}

function route(moveFocus: boolean, reason: string | null = null): void {
  current?.dispose();
  const signedIn = credential() !== null;
  nav.hidden = !signedIn;
  signOut.hidden = !signedIn;
  renew.hidden = !signedIn;
  if (!signedIn) {
    connectionLine.textContent = "Not signed in";
    current = signIn(main, reason, () => route(true));
  } else {
    // Views with a stream say more (Connected, Reconnecting…); the rest still show who is in.
    if (connectionLine.textContent === "Not signed in") connectionLine.textContent = "Signed in";
    current = view(location.pathname);
  }
  document.title = `${current.title} — tidemesh console`;
  const section = location.pathname.slice(BASE.length).split("/")[0] || "overview";
  for (const link of nav.querySelectorAll<HTMLAnchorElement>("a[data-view]")) {
    if (link.dataset.view === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // A new view moves focus to its heading, as a page load would put a screen reader at the top.
  if (moveFocus) (main.querySelector("[role=alert]") ? main.querySelector<HTMLElement>("input") : main.querySelector<HTMLElement>("h1"))?.focus();
}

// Links inside the console change the view without reloading the page (and its session).
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = (event.target as Element).closest?.("a[href]");
  if (!(link instanceof HTMLAnchorElement) || link.origin !== location.origin || !link.pathname.startsWith(BASE)) return;
  if (link.classList.contains("skip")) return;
  event.preventDefault();
  if (link.pathname + link.search !== location.pathname + location.search) shell.navigate(link.pathname + link.search);
  else route(true);
});
window.addEventListener("popstate", () => route(true));
signOut.addEventListener("click", () => {
  forget();
  history.pushState(null, "", BASE);
  route(true, null);
});
renew.addEventListener("click", () => void renewCredential(renew, (text) => (connectionLine.textContent = text)));
setUpThemeSwitch(document.getElementById("theme") as HTMLSelectElement);
route(false);
document.documentElement.dataset.ready = "true";
