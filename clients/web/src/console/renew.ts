// Renew the signed-in credential without closing anything: the new one is checked (GetMeshStatus),
// then moved onto every open stream in-band (RefreshStreamCredential carries it in its metadata),
// then kept for the calls that follow. For a JWT about to expire, or a key being rotated.
import { Code } from "@connectrpc/connect";
import { describe, failure, gateway } from "./api.js";
import { confirm } from "./dialog.js";
import { field, h } from "./dom.js";
import { remember, streamIds } from "./session.js";

export async function renewCredential(opener: HTMLElement, done: (text: string) => void): Promise<void> {
  const input = h("input", { id: "renew-credential", type: "password", autocomplete: "off", spellcheck: "false" });
  const error = (): HTMLElement => document.getElementById("renew-credential-error")!;
  const fail = (text: string): boolean => {
    error().textContent = text;
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return false;
  };
  let value = "";
  const renewed = await confirm(opener, {
    title: "Renew your credential",
    body: [
      h("p", {}, "The open streams keep going: each moves to the new credential in-band, nothing is closed."),
      field("renew-credential", "New API key or JWT", input, "It replaces the one in this tab."),
    ],
    action: "Renew",
    focus: input,
    async accept() {
      value = input.value.trim();
      if (!value) return fail("enter an API key (tmk_…) or a JWT.");
      try {
        await gateway(value).getMeshStatus({});
      } catch (caught) {
        const f = failure(caught);
        if (f.code !== Code.PermissionDenied) return fail(`the mesh refused this credential (${describe(f)}).`);
      }
      return true;
    },
  });
  if (!renewed) return;
  const ids = streamIds();
  const refused: string[] = [];
  await Promise.all(
    ids.map((streamId) =>
      gateway(value)
        .refreshStreamCredential({ streamId })
        .catch((caught: unknown) => void refused.push(describe(failure(caught)))),
    ),
  );
  remember(value);
  const moved = ids.length - refused.length;
  done(
    `Credential renewed; ${moved} open stream${moved === 1 ? "" : "s"} moved to it in-band` +
      (refused.length ? `, ${refused.length} refused (${refused[0]}): they reopen with it.` : "."),
  );
}
