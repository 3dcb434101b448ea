// The theme switch: "system" follows prefers-color-scheme / prefers-contrast (tokens.css); a
// chosen theme is set on <html data-theme> and remembered in localStorage.
import { choose } from "./dom.js";

const KEY = "tidemesh.theme";
const THEMES = ["light", "dark", "high-contrast"];

export function applyTheme(choice: string): void {
  if (THEMES.includes(choice)) document.documentElement.dataset.theme = choice;
  else delete document.documentElement.dataset.theme;
}

export function setUpThemeSwitch(select: HTMLSelectElement): void {
  const saved = localStorage.getItem(KEY) ?? "system";
  choose(select, THEMES.includes(saved) ? saved : "system");
  applyTheme(select.value);
  select.addEventListener("change", () => {
    localStorage.setItem(KEY, select.value);
    applyTheme(select.value);
  });
}
