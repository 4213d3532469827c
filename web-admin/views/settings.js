// Settings: signing keys, members, allowed origins, channel defaults, the audit log, and
// deleting the tenant.

import { html, useState } from "../vendor/preact-htm.mjs";
import { api, tenantPath } from "../api.js";
import { PageHead, Field, FormError, errorsOf, CopyButton, Confirm, useLoad, Loading, fmt, canWrite } from "../ui.js";
import { navigate } from "../app.js";

function SigningKeys({ tenant }) {
  const [keys, error, reload] = useLoad(() => api.get(tenantPath(tenant.slug, "signing-keys")), [tenant.slug]);
  const [rotating, setRotating] = useState(false);
  const [shown, setShown] = useState({});
  return html`<section class="card" aria-labelledby="sk-title">
    <div class="card-head"><h2 id="sk-title">Signing keys</h2>
      ${canWrite(tenant) && html`<button type="button" class="btn" onClick=${() => setRotating(true)}>Rotate</button>`}</div>
    <p class="muted">Your server can sign subscriber tokens itself (HS256, the key's id as <code>kid</code>). After a rotation the previous key still verifies for a grace period.</p>
    ${!keys
      ? html`<${Loading} error=${error} />`
      : html`<div class="table-wrap" tabindex="0"><table>
          <thead><tr><th scope="col">Key id</th><th scope="col">Secret</th><th scope="col">Created</th><th scope="col">Status</th></tr></thead>
          <tbody>${keys.map(
            (k) => html`<tr>
              <th scope="row"><code>${k.kid}</code></th>
              <td class="secret-cell">${shown[k.kid]
                ? html`<code class="secret">${k.secret}</code> <${CopyButton} text=${k.secret} />`
                : html`<button type="button" class="btn small" onClick=${() => setShown({ ...shown, [k.kid]: true })}>Show secret<span class="sr-only"> of ${k.kid}</span></button>`}</td>
              <td>${fmt.when(k.created_at)}</td>
              <td>${k.current ? html`<span class="badge ok">current</span>` : html`verifies until ${fmt.when(k.expires_at)}`}</td>
            </tr>`,
          )}</tbody></table></div>`}
    <${Confirm} open=${rotating} title="Rotate the signing key?" danger=${false} action="Rotate"
      body="Tokens are minted with the new key at once; tokens signed with the current key keep working for the grace period."
      onConfirm=${async () => (await api.post(tenantPath(tenant.slug, "signing-keys")), reload())} onClose=${() => setRotating(false)} />
  </section>`;
}

function Members({ tenant, me }) {
  const [members, error, reload] = useLoad(() => api.get(tenantPath(tenant.slug, "members")), [tenant.slug]);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("viewer");
  const [addError, setAddError] = useState(null);
  const [removing, setRemoving] = useState(null);
  const owner = tenant.role === "owner";
  const add = async (e) => {
    e.preventDefault();
    setAddError(null);
    try {
      await api.post(tenantPath(tenant.slug, "members"), { email, role }, { fields: ["email", "role"] });
      setEmail("");
      reload();
    } catch (err) {
      if (err.code === "not_found" || err.code === "conflict") err.field = "email";
      setAddError(err);
    }
  };
  const { fields, form } = errorsOf(addError);
  return html`<section class="card" aria-labelledby="mem-title">
    <h2 id="mem-title">Members</h2>
    ${!members
      ? html`<${Loading} error=${error} />`
      : html`<div class="table-wrap" tabindex="0"><table>
          <thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Since</th>${owner && html`<th scope="col"><span class="sr-only">Actions</span></th>`}</tr></thead>
          <tbody>${members.map(
            (m) => html`<tr>
              <th scope="row">${m.email}${m.account_id === me.account.id ? html` <span class="muted">(you)</span>` : ""}</th>
              <td><span class="badge">${m.role}</span></td>
              <td>${fmt.when(m.created_at)}</td>
              ${owner && html`<td class="row-actions">${m.account_id !== me.account.id &&
                html`<button type="button" class="btn danger small" onClick=${() => setRemoving(m)}>Remove<span class="sr-only"> ${m.email}</span></button>`}</td>`}
            </tr>`,
          )}</tbody></table></div>`}
    ${owner &&
    html`<form class="inline-form" onSubmit=${add} aria-label="Add a member">
      <${Field} label="Member email" type="email" value=${email} onInput=${setEmail} error=${fields.email} required
        hint="The person must have a Herald account." />
      <div class="field"><label for="member-role">Role</label>
        <select id="member-role" value=${role} onChange=${(e) => setRole(e.currentTarget.value)}>
          <option value="admin">admin — can change everything but members</option>
          <option value="viewer">viewer — read only</option>
        </select></div>
      <div class="field"><span class="label-spacer" aria-hidden="true"></span><button type="submit" class="btn primary">Add member</button></div>
      <${FormError} error=${form} />
    </form>`}
    ${owner && html`<${Confirm} open=${!!removing} title=${removing ? `Remove ${removing.email}?` : ""} action="Remove"
      body="They lose access to this tenant at once." onClose=${() => setRemoving(null)}
      onConfirm=${async () => (await api.del(tenantPath(tenant.slug, "members", String(removing.account_id))), reload())} />`}
  </section>`;
}

function General({ tenant, onChanged }) {
  const writer = canWrite(tenant);
  const [name, setName] = useState(tenant.name);
  const [origins, setOrigins] = useState(tenant.allowed_origins.join("\n"));
  const d = tenant.channel_defaults;
  const [visibility, setVisibility] = useState(d.visibility);
  const [size, setSize] = useState(String(d.history_size));
  const [ttl, setTtl] = useState(String(d.history_ttl_seconds));
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setSaved(false);
    try {
      await api.patch(
        tenantPath(tenant.slug),
        {
          name,
          allowed_origins: origins.split(/[\s,]+/).filter(Boolean),
          channel_defaults: { visibility, history_size: Number(size), history_ttl_seconds: Number(ttl) },
        },
        { fields: ["name", "origin", "history_size", "history_ttl_seconds"] },
      );
      setSaved(true);
      onChanged();
    } catch (err) {
      setError(err);
    }
  };
  const { fields, form } = errorsOf(error);
  return html`<form class="card form-grid" onSubmit=${submit} aria-labelledby="gen-title">
    <h2 id="gen-title">Tenant</h2>
    <fieldset disabled=${!writer} class="plain">
      <${Field} label="Display name" value=${name} onInput=${setName} error=${fields.name} />
      <${Field} label="Allowed origins" multiline rows="3" value=${origins} onInput=${setOrigins} error=${fields.origin}
        hint=${html`One per line, e.g. <code>https://shop.example</code>; <code>*</code> lets any site read your streams.`} />
      <h3>Channel defaults</h3>
      <p class="muted">For every channel without settings of its own.</p>
      <div class="field"><label for="def-vis">Default visibility</label>
        <select id="def-vis" value=${visibility} onChange=${(e) => setVisibility(e.currentTarget.value)}>
          <option value="public">public</option><option value="private">private</option></select></div>
      <div class="row2">
        <${Field} label="Default history size" type="number" min="1" value=${size} onInput=${setSize} error=${fields.history_size} />
        <${Field} label="Default history TTL (seconds)" type="number" min="1" max="2592000" value=${ttl} onInput=${setTtl} error=${fields.history_ttl_seconds} />
      </div>
    </fieldset>
    <${FormError} error=${form} />
    ${saved && html`<p role="status" class="ok">Saved.</p>`}
    ${writer && html`<div><button type="submit" class="btn primary">Save</button></div>`}
  </form>`;
}

function Audit({ tenant }) {
  const [pages, setPages] = useState([undefined]); // `before` of each page shown
  const [page, error] = useLoad(
    () => api.get(tenantPath(tenant.slug, "audit") + "?limit=20" + (pages[pages.length - 1] ? `&before=${pages[pages.length - 1]}` : "")),
    [tenant.slug, pages.length],
  );
  return html`<section class="card" aria-labelledby="audit-title">
    <h2 id="audit-title">Audit log</h2>
    ${!page
      ? html`<${Loading} error=${error} />`
      : html`<div class="table-wrap" tabindex="0"><table>
          <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Target</th><th scope="col">From</th></tr></thead>
          <tbody>${page.entries.map(
            (a) => html`<tr><td>${fmt.when(a.at)}</td><td>${a.actor}</td><td><code>${a.action}</code></td>
              <td>${a.target || ""}</td><td>${a.ip || ""}</td></tr>`,
          )}</tbody></table></div>
          <div class="pager">
            <button type="button" class="btn small" disabled=${pages.length === 1} onClick=${() => setPages(pages.slice(0, -1))}>Newer</button>
            <span class="muted">Page ${pages.length}</span>
            <button type="button" class="btn small" disabled=${!page.next_before} onClick=${() => setPages([...pages, page.next_before])}>Older</button>
          </div>`}
  </section>`;
}

function DeleteTenant({ tenant, onChanged }) {
  const [open, setOpen] = useState(false);
  const [typed, setTyped] = useState("");
  return html`<section class="card danger-zone" aria-labelledby="del-title">
    <h2 id="del-title">Delete tenant</h2>
    <p>Revokes every key, ends every stream and removes all history of <strong>${tenant.slug}</strong>. This cannot be undone.</p>
    <button type="button" class="btn danger" onClick=${() => (setTyped(""), setOpen(true))}>Delete tenant</button>
    <${Confirm} open=${open} title=${`Delete ${tenant.name}?`} action="Delete tenant" disabled=${typed !== tenant.slug}
      onClose=${() => setOpen(false)}
      onConfirm=${async () => {
        await api.del(tenantPath(tenant.slug));
        await onChanged();
        navigate("/");
      }}>
      <${Field} label=${`Type ${tenant.slug} to confirm`} value=${typed} onInput=${setTyped} autocomplete="off" />
    <//>
  </section>`;
}

export function Settings({ tenant, me, onChanged }) {
  return html`<div>
    <${PageHead} tenant=${tenant} title="Settings" />
    <${General} tenant=${tenant} onChanged=${onChanged} />
    <${SigningKeys} tenant=${tenant} />
    <${Members} tenant=${tenant} me=${me} />
    <${Audit} tenant=${tenant} />
    ${tenant.role === "owner" && html`<${DeleteTenant} tenant=${tenant} onChanged=${onChanged} />`}
  </div>`;
}
