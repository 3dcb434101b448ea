// A second factor for a sensitive action. A call the mesh refuses with a step-up challenge
// (UNAUTHENTICATED with tidemesh-step-up-action and -resource beside www-authenticate, RFC 9470's
// insufficient_user_authentication) opens a dialog asking for a one-time code; StepUp trades the
// code for a token bound to that one action and resource, and the call runs once more with it in
// x-tidemesh-step-up. A refused code is an error on the field and the dialog stays; Cancel or
// Escape does nothing. The code is sent once, to StepUp, and kept nowhere.
import type { CallOptions } from "@connectrpc/connect";
import { access, describe, failure } from "./api.js";
import { confirm } from "./dialog.js";
import { field, h } from "./dom.js";

export const STEP_UP_HEADER = "x-tidemesh-step-up";

/** The call options that carry a step-up token (none without one). */
export function stepUpOptions(token: string): CallOptions {
  return token ? { headers: { [STEP_UP_HEADER]: token } } : {};
}

/** `call("")`; on a step-up challenge, a code asked for in a dialog opened from `opener` buys a token
 * and `call(token)` runs once more. Resolves null when the dialog is cancelled: nothing was done. Any
 * other failure, and a refusal of the second call, is thrown as it came. */
export async function withStepUp<T>(opener: HTMLElement, call: (token: string) => Promise<T>): Promise<T | null> {
  let challenge: { action: string; resource: string };
  try {
    return await call("");
  } catch (caught) {
    const stepUp = failure(caught).stepUp;
    if (!stepUp) throw caught;
    challenge = stepUp;
  }
  const token = await askForCode(opener, challenge.action, challenge.resource);
  return token === null ? null : call(token);
}

/** The dialog: a labelled code field (focused), its error tied to it; the token, or null on Cancel. */
async function askForCode(opener: HTMLElement, action: string, resource: string): Promise<string | null> {
  const input = h("input", {
    id: "step-up-code",
    name: "code",
    type: "text",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    spellcheck: "false",
    required: true,
  });
  const control = field(
    "step-up-code",
    "One-time code",
    input,
    "The 6 digits your authenticator app shows now. They approve this one action, once, for two minutes.",
  );
  const error = control.querySelector<HTMLElement>(".field-error")!;
  error.setAttribute("role", "alert"); // said when it changes: the field keeps the focus meanwhile
  const fail = (text: string): boolean => {
    error.textContent = text;
    input.setAttribute("aria-invalid", "true");
    input.select();
    input.focus();
    return false;
  };
  let token = "";
  const verified = await confirm(opener, {
    title: `A second factor for ${action}`,
    body: [
      h("p", {}, "The mesh wants a fresh second factor for ", h("code", {}, action), " on ", h("code", {}, resource), "."),
      control,
    ],
    action: "Verify code",
    focus: input,
    async accept() {
      const code = input.value.replace(/\s+/g, "");
      if (!/^\d{6}$/.test(code)) return fail("enter the 6 digits your authenticator shows.");
      try {
        token = (await access().stepUp({ action, resource, code })).token;
      } catch (caught) {
        const f = failure(caught);
        return fail(`the code was not taken (${describe(f)}).`);
      }
      return true;
    },
  });
  return verified ? token : null;
}
