// A small element builder: the console renders with the DOM API (no innerHTML, so no markup
// injection from task data).
type Child = Node | string | null | undefined | false;
type Attributes = Record<string, string | boolean | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : value);
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

export function clear(element: Element): void {
  element.replaceChildren();
}

/** A table with a caption, header cells and rows; `numeric` columns align right. */
export function table(caption: string, headers: string[], rows: Child[][], numeric: Set<number> = new Set()): HTMLElement {
  const head = h("tr", {}, ...headers.map((text, i) => h("th", { scope: "col", class: numeric.has(i) ? "number" : undefined }, text)));
  const body = rows.length
    ? rows.map((cells) => h("tr", {}, ...cells.map((cell, i) => h("td", { class: numeric.has(i) ? "number" : undefined }, cell))))
    : [h("tr", {}, h("td", { colspan: String(headers.length) }, "None"))];
  return h("table", {}, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, ...body));
}

/** A labelled form control with an optional hint and an error line, both tied to it by aria-describedby. */
export function field(id: string, label: string, control: HTMLElement, hint?: string): HTMLElement {
  const error = h("p", { id: `${id}-error`, class: "field-error" });
  control.setAttribute("aria-describedby", [hint ? `${id}-hint` : "", `${id}-error`].join(" ").trim());
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    hint ? h("p", { id: `${id}-hint`, class: "hint" }, hint) : null,
    control,
    error,
  );
}

/** Choose `value` in `select` (the first option when no option has it), and mark the chosen option
 * with the `selected` attribute too, kept on whichever is chosen: the markup then says what the
 * control's value is, as checkers that read attributes (HTML_CodeSniffer's 4.1.2) look for it. */
export function choose(select: HTMLSelectElement, value?: string): void {
  if (value !== undefined) select.value = value;
  if (select.selectedIndex < 0 && select.options.length) select.selectedIndex = 0;
  for (const option of select.options) option.defaultSelected = option.selected;
  if (!select.dataset.chosen) {
    select.dataset.chosen = "kept";
    select.addEventListener("change", () => choose(select));
  }
}
