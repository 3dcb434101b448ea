// A confirmation dialog: a real modal (<dialog>.showModal(): the page behind is inert), Tab and
// Shift+Tab kept inside it, Escape cancels, Cancel is first and has the focus when it opens, and
// focus goes back to the control that opened it. It says what the action touches before anything runs.
import { h } from "./dom.js";

export interface Confirmation {
  title: string;
  /** What the action touches: ids, counts, what stays. */
  body: Node[];
  action: string; // the confirm button's text, e.g. "Replay task 01J…"
  /** Where focus starts (default: Cancel), e.g. a field the dialog asks for. */
  focus?: HTMLElement;
  /** Runs on confirm; false keeps the dialog open (it has shown why). */
  accept?: () => Promise<boolean>;
}

let counter = 0;

/** Resolves true when the action is confirmed, false on Cancel or Escape. */
export function confirm(opener: HTMLElement, { title, body, action, focus, accept }: Confirmation): Promise<boolean> {
  const id = `dialog-${++counter}`;
  const cancel = h("button", { type: "button", class: "cancel" }, "Cancel");
  const ok = h("button", { type: "button", class: "danger" }, action);
  const dialog = h(
    "dialog",
    { class: "confirm", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-body` },
    h("h2", { id: `${id}-title` }, title),
    h("div", { id: `${id}-body` }, ...body),
    h("div", { class: "row actions" }, cancel, ok),
  );
  document.body.append(dialog);
  return new Promise((resolve) => {
    let answer = false;
    const finish = (value: boolean): void => {
      answer = value;
      dialog.close();
    };
    dialog.addEventListener("close", () => {
      dialog.remove();
      opener.focus();
      resolve(answer);
    });
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault(); // Escape: close as Cancel, the same path as the button
      finish(false);
    });
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab") return;
      const controls = [...dialog.querySelectorAll<HTMLElement>("a[href], button:not([disabled]), input, select, textarea")];
      const first = controls[0];
      const last = controls[controls.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    });
    cancel.addEventListener("click", () => finish(false));
    ok.addEventListener("click", async () => {
      if (!accept) return finish(true);
      ok.disabled = true;
      const accepted = await accept();
      ok.disabled = false;
      if (accepted) finish(true);
    });
    for (const input of dialog.querySelectorAll("input")) {
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter") (event.preventDefault(), ok.click());
      });
    }
    dialog.showModal();
    (focus ?? cancel).focus(); // the safe choice is the default
  });
}
