// Sign in with an API key or a JWT: checked against the mesh (GetMeshStatus) before it is kept.
import { Code } from "@connectrpc/connect";
import { describe, failure, gateway } from "../api.js";
import { h } from "../dom.js";
import { remember } from "../session.js";
import type { View } from "../view.js";

export function signIn(main: HTMLElement, reason: string | null, done: () => void): View {
  const error = h("p", { id: "credential-error", class: "field-error" });
  const input = h("input", {
    id: "credential",
    name: "credential",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "credential-hint credential-error",
  });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "fields", novalidate: true, "aria-labelledby": "signin-title" },
    h(
      "div",
      { class: "field" },
      h("label", { for: "credential" }, "API key or JWT"),
      h(
        "p",
        { id: "credential-hint", class: "hint" },
        "An API key (tmk_…) or a JSON Web Token. It stays in this tab until you sign out.",
      ),
      input,
      error,
    ),
    button,
  );
  const fail = (text: string): void => {
    error.textContent = text;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return fail("enter an API key (tmk_…) or a JWT.");
    button.disabled = true;
    try {
      await gateway(value).getMeshStatus({});
    } catch (caught) {
      const f = failure(caught);
      // A credential without the role to read the mesh's status is still a credential.
      if (f.code !== Code.PermissionDenied) {
        button.disabled = false;
        const refusedText = f.code === Code.Unauthenticated ? "the mesh refused this credential" : "sign-in failed";
        return fail(`${refusedText} (${describe(f)}).`);
      }
    }
    remember(value);
    done();
  });
  main.replaceChildren(h("h1", { id: "signin-title", tabindex: "-1" }, "Sign in"));
  if (reason) main.append(h("p", { class: "alert", role: "alert" }, reason));
  main.append(form);
  return { title: "Sign in", dispose() {} };
}
