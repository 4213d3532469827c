// Channels: the ones with settings of their own, with live subscriber counts; create one; open
// any channel's inspector by name.

import { html, useState, useEffect } from "../vendor/preact-htm.mjs";
import { api, tenantPath } from "../api.js";
import { PageHead, Field, FormError, errorsOf, useLoad, Loading, fmt, canWrite } from "../ui.js";
import { navigate } from "../app.js";

const TTL_MAX = 2592000;
const channelHref = (tenant, name) => `/t/${encodeURIComponent(tenant.slug)}/channels/${encodeURIComponent(name)}`;

function useMaxHistory(tenant) {
  const [limits] = useLoad(() => api.get(tenantPath(tenant.slug, "limits")), [tenant.slug]);
  return limits ? limits.limits.max_history_size : undefined;
}

/** Visibility and history of a channel: creates it (no `channel`) or changes it. */
export function ChannelSettingsForm({ tenant, channel, view, onSaved }) {
  const defaults = view || tenant.channel_defaults;
  const maxHistory = useMaxHistory(tenant);
  const [name, setName] = useState("");
  const [visibility, setVisibility] = useState(defaults.visibility);
  const [size, setSize] = useState(String(defaults.history_size));
  const [ttl, setTtl] = useState(String(defaults.history_ttl_seconds));
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const writer = canWrite(tenant);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(false);
    const body = { visibility, history_size: Number(size), history_ttl_seconds: Number(ttl) };
    const fields = ["name", "history_size", "history_ttl_seconds", "visibility"];
    try {
      if (channel) {
        await api.patch(tenantPath(tenant.slug, "channels", channel), body, { fields });
        setSaved(true);
        onSaved();
      } else {
        const created = await api.post(tenantPath(tenant.slug, "channels"), { name, ...body }, { fields });
        onSaved(created);
      }
    } catch (err) {
      if (err.code === "conflict") err.field = "name";
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const { fields, form } = errorsOf(error);
  return html`<form class="form-grid" onSubmit=${submit} aria-label=${channel ? "Channel settings" : "New channel"}>
    ${!channel && html`<${Field} label="Channel name" value=${name} onInput=${setName} error=${fields.name} required
      pattern="[A-Za-z0-9._:@\\-]{1,128}" placeholder="orders" hint="1 to 128 of A–Z a–z 0–9 . _ : @ -; name@user is a personal channel." />`}
    <fieldset disabled=${!writer}>
      <legend>Visibility</legend>
      <label class="check"><input type="radio" name=${`vis-${channel || "new"}`} checked=${visibility === "public"} onChange=${() => setVisibility("public")} />
        public<span class="muted"> — anyone with the URL may subscribe</span></label>
      <label class="check"><input type="radio" name=${`vis-${channel || "new"}`} checked=${visibility === "private"} onChange=${() => setVisibility("private")} />
        private<span class="muted"> — only with a subscriber token</span></label>
    </fieldset>
    <div class="row2">
      <${Field} label="History size" type="number" min="1" max=${maxHistory} value=${size} onInput=${setSize}
        error=${fields.history_size} disabled=${!writer}
        hint=${maxHistory ? `Events kept for resume: 1 to ${fmt.n(maxHistory)} on the ${tenant.plan} plan` : "Events kept for resume"} />
      <${Field} label="History TTL (seconds)" type="number" min="1" max=${TTL_MAX} value=${ttl} onInput=${setTtl}
        error=${fields.history_ttl_seconds} disabled=${!writer} hint=${`${fmt.duration(Number(ttl) || 0)}; at most 30 days`} />
    </div>
    <${FormError} error=${form} />
    ${saved && html`<p role="status" class="ok">Saved.</p>`}
    ${writer && html`<div><button type="submit" class="btn primary" disabled=${busy}>${channel ? "Save" : "Create channel"}</button></div>`}
  </form>`;
}

export function Channels({ tenant }) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 3000);
    return () => clearInterval(t);
  }, []);
  const [channels, error, reload] = useLoad(() => api.get(tenantPath(tenant.slug, "channels")), [tenant.slug, tick]);
  const [creating, setCreating] = useState(false);
  const [open, setOpen] = useState("");
  const writer = canWrite(tenant);
  return html`<div>
    <${PageHead} tenant=${tenant} title="Channels">
      ${writer && !creating && html`<button type="button" class="btn primary" onClick=${() => setCreating(true)}>New channel</button>`}
    <//>
    ${creating &&
    html`<section class="card" aria-labelledby="new-ch-title">
      <div class="card-head"><h2 id="new-ch-title">New channel</h2>
        <button type="button" class="btn ghost small" onClick=${() => setCreating(false)}>Cancel</button></div>
      <${ChannelSettingsForm} tenant=${tenant} onSaved=${(c) => (setCreating(false), reload(), navigate(channelHref(tenant, c.name)))} />
    </section>`}
    <form class="card open-channel" onSubmit=${(e) => (e.preventDefault(), open && navigate(channelHref(tenant, open)))}>
      <${Field} label="Open any channel" value=${open} onInput=${setOpen} placeholder="orders"
        hint="Channels need no creation; those below have settings of their own." />
      <div><button type="submit" class="btn">Open inspector</button></div>
    </form>
    <section class="card" aria-labelledby="ch-title">
      <h2 id="ch-title">Configured channels</h2>
      ${!channels
        ? html`<${Loading} error=${error} what="channels" />`
        : channels.length === 0
          ? html`<p class="muted">None yet. Every channel uses the tenant's defaults (${tenant.channel_defaults.visibility}, ${fmt.n(tenant.channel_defaults.history_size)} events, ${fmt.duration(tenant.channel_defaults.history_ttl_seconds)}).</p>`
          : html`<div class="table-wrap" tabindex="0"><table>
              <thead><tr><th scope="col">Channel</th><th scope="col">Visibility</th><th scope="col">Subscribers</th>
                <th scope="col">History</th><th scope="col">Last event id</th></tr></thead>
              <tbody>${channels.map(
                (c) => html`<tr>
                  <th scope="row"><a href=${channelHref(tenant, c.name)}>${c.name}</a></th>
                  <td><span class=${`badge ${c.visibility}`}>${c.visibility}</span></td>
                  <td class="num" data-subscribers=${c.subscribers}>${fmt.n(c.subscribers)}</td>
                  <td>${fmt.n(c.history_size)} · ${fmt.duration(c.history_ttl_seconds)}</td>
                  <td>${c.last_event_id ? html`<code class="event-id">${c.last_event_id}</code>` : html`<span class="muted">none</span>`}</td>
                </tr>`,
              )}</tbody>
            </table></div>`}
    </section>
  </div>`;
}
