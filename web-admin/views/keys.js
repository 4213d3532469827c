// API keys: create (name, scopes, channel patterns), the secret shown once; list; revoke.

import { html, useState } from "../vendor/preact-htm.mjs";
import { api, tenantPath } from "../api.js";
import { PageHead, Field, FormError, errorsOf, CopyButton, Confirm, useLoad, Loading, fmt, canWrite } from "../ui.js";

const SCOPES = [
  ["publish", "Publish events"],
  ["subscribe", "Mint subscriber tokens, read history"],
  ["admin", "Use the admin API as a script"],
];

// The last key this tab created, for the get-started panel and the inspector's publish form.
// sessionStorage: gone with the tab, never sent anywhere but to this origin's /v1.
const keyStore = (slug) => `herald:key:${slug}`;
export const rememberKey = (slug, secret) => sessionStorage.setItem(keyStore(slug), secret);
export const rememberedKey = (slug) => sessionStorage.getItem(keyStore(slug)) || "";
export const forgetKey = (slug, id) => {
  if (rememberedKey(slug).startsWith(`hk_${id}`)) sessionStorage.removeItem(keyStore(slug));
};

function NewKey({ tenant, onCreated }) {
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState(["publish"]);
  const [patterns, setPatterns] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const toggle = (s) => setScopes(scopes.includes(s) ? scopes.filter((x) => x !== s) : [...scopes, s]);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const channels = patterns.split(/[\s,]+/).filter(Boolean);
    try {
      const key = await api.post(
        tenantPath(tenant.slug, "keys"),
        { name, scopes, ...(channels.length ? { channels } : {}) },
        { fields: ["name", "scope", "channel"] },
      );
      rememberKey(tenant.slug, key.secret);
      setName("");
      setPatterns("");
      onCreated(key);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const { fields, form } = errorsOf(error);
  return html`<form class="card form-grid" onSubmit=${submit} aria-labelledby="new-key-title">
    <h2 id="new-key-title">New key</h2>
    <${Field} label="Name" value=${name} onInput=${setName} error=${fields.name} required maxlength="100"
      hint="A label for you, e.g. the service that uses it." />
    <fieldset class="scopes" aria-describedby=${fields.scope ? "scope-error" : undefined}>
      <legend>Scopes</legend>
      ${SCOPES.map(
        ([s, what]) => html`<div class="check"><input type="checkbox" id=${`scope-${s}`} aria-describedby=${`scope-${s}-what`}
          checked=${scopes.includes(s)} onChange=${() => toggle(s)} /><label for=${`scope-${s}`}>${s}</label>
          <span class="muted" id=${`scope-${s}-what`}>— ${what}</span></div>`,
      )}
      ${fields.scope && html`<p class="field-error" id="scope-error">${fields.scope}</p>`}
    </fieldset>
    <${Field} label="Channel patterns" value=${patterns} onInput=${setPatterns} error=${fields.channel}
      placeholder="orders, team:7:*" hint="Optional. Names, or prefixes ending in *, separated by commas. Empty: every channel." />
    <${FormError} error=${form} />
    <div><button type="submit" class="btn primary" disabled=${busy}>Create key</button></div>
  </form>`;
}

function Created({ keyView, onDone }) {
  return html`<section class="card secret-box" aria-labelledby="created-title">
    <h2 id="created-title">Key “${keyView.name}” created</h2>
    <p class="warn"><strong>Copy the secret now.</strong> It is shown only this once; Herald keeps only a hash of it.</p>
    <div class="secret-row"><code aria-label="API key secret" class="secret">${keyView.secret}</code><${CopyButton} text=${keyView.secret} /></div>
    <button type="button" class="btn ghost small" onClick=${onDone}>I have saved it</button>
  </section>`;
}

export function Keys({ tenant }) {
  const [keys, error, reload] = useLoad(() => api.get(tenantPath(tenant.slug, "keys")), [tenant.slug]);
  const [created, setCreated] = useState(null);
  const [revoking, setRevoking] = useState(null);
  const writer = canWrite(tenant);
  const revoke = async () => {
    await api.del(tenantPath(tenant.slug, "keys", revoking.id));
    forgetKey(tenant.slug, revoking.id);
    reload();
  };
  return html`<div>
    <${PageHead} tenant=${tenant} title="API keys" />
    ${created && html`<${Created} keyView=${created} onDone=${() => setCreated(null)} />`}
    ${writer && html`<${NewKey} tenant=${tenant} onCreated=${(k) => (setCreated(k), reload())} />`}
    <section class="card" aria-labelledby="keys-title">
      <h2 id="keys-title">Keys</h2>
      ${!keys
        ? html`<${Loading} error=${error} what="keys" />`
        : keys.length === 0
          ? html`<p class="muted">No keys yet.${writer ? " Create one above." : ""}</p>`
          : html`<div class="table-wrap" tabindex="0"><table>
              <thead><tr><th scope="col">Name</th><th scope="col">Key</th><th scope="col">Scopes</th><th scope="col">Channels</th>
                <th scope="col">Created</th><th scope="col">Last used</th>${writer && html`<th scope="col"><span class="sr-only">Actions</span></th>`}</tr></thead>
              <tbody>${keys.map(
                (k) => html`<tr>
                  <th scope="row">${k.name}${!writer && k.revoked_at ? html` <span class="badge">revoked</span>` : ""}</th>
                  <td><code>hk_${k.id}…</code></td>
                  <td>${k.scopes.map((s) => html`<span class="badge">${s}</span> `)}</td>
                  <td>${k.channels ? k.channels.map((c) => html`<code class="pattern">${c}</code> `) : html`<span class="muted">all</span>`}</td>
                  <td>${fmt.when(k.created_at)}</td>
                  <td>${fmt.ago(k.last_used_at)}</td>
                  ${writer && html`<td class="row-actions">${k.revoked_at
                    ? html`<span class="badge">revoked</span>`
                    : html`<button type="button" class="btn danger small" aria-label=${`Revoke ${k.name}`}
                        onClick=${() => setRevoking(k)}>Revoke</button>`}</td>`}
                </tr>`,
              )}</tbody>
            </table></div>`}
    </section>
    ${writer && html`<${Confirm} open=${!!revoking} title=${revoking ? `Revoke “${revoking.name}”?` : ""}
      body="Requests with this key are refused within a second. This cannot be undone." action="Revoke"
      onConfirm=${revoke} onClose=${() => setRevoking(null)} />`}
  </div>`;
}
