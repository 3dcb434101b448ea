// pa11y over the web console's views, for tests/browser/test_console.py (via _pa11y.py): both runners (axe and
// HTML_CodeSniffer), WCAG 2 AA, in Debian's Chromium (never a downloaded one).
//
// Input, one JSON document on stdin (the credential never rides in argv or the environment):
//   {"base": "https://127.0.0.1:PORT", "credential": "...", "chromium": "/usr/bin/chromium",
//    "args": ["--no-sandbox", ...], "views": [{"name": "tasks", "path": "/console/tasks?tenant=t",
//    "ready": "#tasks-results table", "actions": ["click element #x", ...], "signed_in": true,
//    "themes": ["system", "dark", ...]}, ...]}
// Output, on stdout: {"views": {"<name>/<theme>": {"url": ..., "issues": [...]}}}: every error and
// warning pa11y reports, each view in each theme (the test decides what fails).
//
// One browser page checks the signed-out views, signs in once (the credential lives in that tab's
// sessionStorage), then the others: pa11y opens each view in that same page and waits for its
// `ready` selector before the runners start.
import pa11y from "pa11y";
import puppeteer from "puppeteer";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const input = await readStdin();
const browser = await puppeteer.launch({
  executablePath: input.chromium,
  args: input.args,
  headless: true,
  acceptInsecureCerts: false, // a certificate error stays an error
});
const results = {};

async function check(page, view) {
  const outcome = await pa11y(`${input.base}${view.path}`, {
    browser,
    page,
    runners: ["axe", "htmlcs"],
    standard: "WCAG2AA",
    includeWarnings: true,
    includeNotices: false,
    timeout: 30000,
    // A chosen theme is on <html data-theme> once the page has read it: checked, not assumed.
    actions: [
      ...(theme === "system" ? [] : [`wait for element html[data-theme="${theme}"] to be visible`]),
      `wait for element ${view.ready} to be visible`,
      ...view.actions,
    ],
    log: { debug: () => {}, error: (message) => process.stderr.write(`${message}\n`), info: () => {} },
  });
  results[`${view.name}/${theme}`] = { url: outcome.pageUrl, title: outcome.documentTitle, issues: outcome.issues };
}

let theme = "system";

/** The console's theme switch remembers its choice in localStorage ("system": follow the browser). */
async function useTheme(page, chosen) {
  theme = chosen;
  await page.evaluate((value) => localStorage.setItem("tidemesh.theme", value), chosen);
}

try {
  const page = await browser.newPage();
  await page.goto(`${input.base}/console/`, { waitUntil: "load" });
  const each = async (views) => {
    for (const view of views) {
      for (const chosen of view.themes) {
        await useTheme(page, chosen);
        await check(page, view);
      }
    }
  };
  await each(input.views.filter((v) => !v.signed_in));
  const signedIn = input.views.filter((v) => v.signed_in);
  if (signedIn.length) {
    await useTheme(page, "system");
    await page.goto(`${input.base}/console/`, { waitUntil: "load" });
    await page.waitForSelector("#credential", { visible: true });
    await page.type("#credential", input.credential);
    await page.click("form[aria-labelledby=signin-title] button[type=submit]");
    await page.waitForSelector("#sign-out", { visible: true });
    await each(signedIn);
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ views: results }));
