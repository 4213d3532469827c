// A channel's page: the live inspector, the embed snippets, and its settings.

import { html, useState, useEffect, useRef } from "../vendor/preact-htm.mjs";
import { api, tenantPath } from "../api.js";
import { openStream } from "../sse.js";
import { PageHead, Field, FormError, errorsOf, Snippet, Confirm, useLoad, Loading, fmt, canWrite } from "../ui.js";
import { rememberedKey, rememberKey } from "./keys.js";
import { ChannelSettingsForm } from "./channels.js";
import { navigate } from "../app.js";
import * as S from "../snippets.js";

const MAX_EVENTS = 500;

function pretty(data) {
  try {
    return JSON.stringify(JSON.parse(data), null, 2);
  } catch {
    return data;
  }
}

function PublishForm({ tenant, channel, onPublished }) {
  const [type, setType] = useState("test");
  const [data, setData] = useState('{"hello": "world"}');
  const [key, setKey] = useState(() => rememberedKey(tenant.slug));
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    let value;
    try {
      value = JSON.parse(data);
    } catch {
      value = data; // not JSON: sent as a text payload
    }
    try {
      const url = `/v1/${encodeURIComponent(tenant.slug)}/channels/${encodeURIComponent(channel)}/events`;
      const body = type ? { event: type, data: value } : { data: value };
      const res = await api.post(url, body, { headers: { authorization: `Bearer ${key}` }, fields: ["event", "data", "key"] });
      rememberKey(tenant.slug, key);
      onPublished(res);
    } catch (err) {
      if (err.status === 401) err.field = "key";
      if (err.field === "event") err.field = "type";
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const { fields, form } = errorsOf(error);
  return html`<form class="publish" onSubmit=${submit} aria-labelledby="pub-title">
    <h3 id="pub-title">Publish a test event</h3>
    <${Field} label="Event type" value=${type} onInput=${setType} error=${fields.type} hint="Empty: message" />
    <${Field} label="Data" multiline rows="5" spellcheck="false" value=${data} onInput=${setData} error=${fields.data}
      hint="JSON, or plain text (sent as a string)" />
    <${Field} label="API key" type="password" value=${key} onInput=${setKey} error=${fields.key} autocomplete="off"
      hint=${html`A key with the <code>publish</code> scope; <a href=${`/t/${tenant.slug}/keys`}>create one</a>. Kept in this tab only.`} />
    <${FormError} error=${form} />
    <button type="submit" class="btn primary" disabled=${busy || !key}>Publish</button>
  </form>`;
}

function Inspector({ tenant, channel }) {
  const [events, setEvents] = useState([]);
  const [paused, setPaused] = useState(false);
  const [held, setHeld] = useState([]);
  const [filter, setFilter] = useState("");
  const [state, setState] = useState({ state: "connecting" });
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  useEffect(() => {
    const add = (e) => {
      if (pausedRef.current) setHeld((h) => [...h, e].slice(-MAX_EVENTS));
      else setEvents((list) => [e, ...list].slice(0, MAX_EVENTS));
    };
    const s = openStream(tenant.slug, channel, { onEvent: add, onState: setState });
    return () => s.close();
  }, [tenant.slug, channel]);
  const resume = () => {
    setEvents((list) => [...held.slice().reverse(), ...list].slice(0, MAX_EVENTS));
    setHeld([]);
    setPaused(false);
  };
  const types = [...new Set(events.map((e) => e.type))].sort();
  const shown = filter ? events.filter((e) => e.type === filter) : events;
  return html`<div class="inspector">
    <div class="inspector-main">
      <div class="toolbar">
        <span class=${`conn conn-${state.state}`}>${{ live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", error: "Disconnected" }[state.state]}</span>
        ${state.state === "error" && html`<span class="muted">${state.message}</span>`}
        <span class="spacer"></span>
        <label for="type-filter" class="inline-label">Filter by type</label>
        <select id="type-filter" value=${filter} onChange=${(e) => setFilter(e.currentTarget.value)}>
          <option value="">All types</option>
          ${types.map((t) => html`<option value=${t}>${t}</option>`)}
        </select>
        ${paused
          ? html`<button type="button" class="btn small" onClick=${resume}>Resume${held.length ? ` (${held.length} new)` : ""}</button>`
          : html`<button type="button" class="btn small" onClick=${() => setPaused(true)}>Pause</button>`}
        <button type="button" class="btn small" onClick=${() => (setEvents([]), setHeld([]))}>Clear</button>
      </div>
      <div role="log" aria-label=${`Events on ${channel}`} class="events"><ol>
        ${shown.length === 0 &&
        html`<li class="events-empty">${events.length ? "No events of this type yet." : "No events yet. Publish one and it appears here, live."}</li>`}
        ${shown.map((e) =>
          e.type === "herald.gap"
            ? html`<li class="event gap"><span class="gap-line" aria-hidden="true"></span>
                <span>Gap: some events could not be replayed (${(() => { try { return JSON.parse(e.data).reason; } catch { return e.data; } })()})</span></li>`
            : html`<li class="event">
                <div class="event-meta"><time datetime=${e.at.toISOString()}>${e.at.toLocaleTimeString()}</time>
                  <span class="event-type">${e.type}</span><code class="event-id" title="Event id">${e.id}</code></div>
                <pre class="event-data">${pretty(e.data)}</pre>
              </li>`,
        )}
      </ol></div>
    </div>
    ${canWrite(tenant) && html`<${PublishForm} tenant=${tenant} channel=${channel} onPublished=${() => {}} />`}
  </div>`;
}

function Embed({ tenant, channel, view }) {
  const origin = location.origin;
  const priv = S.isPersonal(channel) || (view && view.visibility === "private");
  const event = "hello";
  return html`<div class="embed">
    ${priv
      ? html`<p>This channel is <strong>${S.isPersonal(channel) ? "personal" : "private"}</strong>: a browser needs a subscriber token, which your server mints with an API key of the <code>subscribe</code> scope and hands to its own signed-in users.</p>
          <h3>Server side: mint a token</h3>
          <${Snippet} name="Embed snippet: token with curl" code=${S.tokenCurl(origin, tenant.slug, channel)} />
          <${Snippet} name="Embed snippet: token with Node" code=${S.tokenNode(origin, tenant.slug, channel)} />
          <${Snippet} name="Embed snippet: token with Python" code=${S.tokenPython(origin, tenant.slug, channel)} />
          <h3>Browser side</h3>
          <${Snippet} name="Embed snippet: HTML" code=${S.htmlPage(origin, tenant.slug, channel, { event, private: true })} />
          <${Snippet} name="Embed snippet: SDK" code=${S.sdkSnippet(origin, tenant.slug, channel, { event, private: true })} />`
      : html`<p>This channel is <strong>public</strong>: anyone with the URL can listen. Paste this page anywhere; the tenant's allowed origins decide which sites may read it.</p>
          <${Snippet} name="Embed snippet: HTML" code=${S.htmlPage(origin, tenant.slug, channel, { event })} />
          <${Snippet} name="Embed snippet: SDK" code=${S.sdkSnippet(origin, tenant.slug, channel, { event })} />
          <${Snippet} name="Embed snippet: publish with curl" code=${S.curlPublish(origin, tenant.slug, channel)} />`}
  </div>`;
}

const TABS = [
  ["inspector", "Inspector"],
  ["embed", "Embed"],
  ["settings", "Settings"],
];

export function Channel({ tenant, channel }) {
  const [view, error, reload] = useLoad(() => api.get(tenantPath(tenant.slug, "channels", channel)), [tenant.slug, channel]);
  const [tab, setTab] = useState(() => (TABS.some(([t]) => `#${t}` === location.hash) ? location.hash.slice(1) : "inspector"));
  const [deleting, setDeleting] = useState(false);
  const choose = (t) => {
    setTab(t);
    history.replaceState(null, "", t === "inspector" ? location.pathname : `#${t}`);
  };
  const onKey = (e) => {
    const i = TABS.findIndex(([t]) => t === tab);
    const next = e.key === "ArrowRight" ? i + 1 : e.key === "ArrowLeft" ? i - 1 : null;
    if (next === null) return;
    const t = TABS[(next + TABS.length) % TABS.length][0];
    choose(t);
    document.getElementById(`tab-${t}`).focus();
  };
  return html`<div>
    <${PageHead} tenant=${tenant} title=${channel}>
      ${view && html`<span class=${`badge ${view.visibility}`}>${S.isPersonal(channel) ? "personal" : view.visibility}</span>
        <span class="muted">${fmt.n(view.subscribers)} subscribers</span>`}
    <//>
    <p class="crumbs"><a href=${`/t/${tenant.slug}/channels`}>← Channels</a> · <code class="url">${S.streamUrl(location.origin, tenant.slug, channel)}</code></p>
    ${error && html`<${Loading} error=${error} />`}
    <div role="tablist" aria-label="Channel" class="tabs" onKeyDown=${onKey}>
      ${TABS.map(([t, label]) => html`<button type="button" role="tab" id=${`tab-${t}`} aria-selected=${tab === t}
        aria-controls=${`panel-${t}`} tabindex=${tab === t ? 0 : -1} onClick=${() => choose(t)}>${label}</button>`)}
    </div>
    <div role="tabpanel" id=${`panel-${tab}`} aria-labelledby=${`tab-${tab}`} class="tabpanel">
      ${tab === "inspector" && html`<${Inspector} tenant=${tenant} channel=${channel} />`}
      ${tab === "embed" && html`<${Embed} tenant=${tenant} channel=${channel} view=${view} />`}
      ${tab === "settings" &&
      (view
        ? html`<div class="card">
            <${ChannelSettingsForm} tenant=${tenant} channel=${channel} view=${view} onSaved=${reload} />
            ${canWrite(tenant) && html`<div class="danger-zone">
              <h3>Delete channel settings</h3>
              <p>Clears the channel's history, ends its streams, and returns it to the tenant's defaults.</p>
              <button type="button" class="btn danger" onClick=${() => setDeleting(true)}>Delete channel</button>
            </div>`}
          </div>`
        : html`<${Loading} error=${error} />`)}
    </div>
    ${canWrite(tenant) && html`<${Confirm} open=${deleting} title=${`Delete “${channel}”?`}
      body="Its history is removed and its subscribers are disconnected." action="Delete channel"
      onConfirm=${async () => {
        await api.del(tenantPath(tenant.slug, "channels", channel));
        navigate(`/t/${tenant.slug}/channels`);
      }} onClose=${() => setDeleting(false)} />`}
  </div>`;
}
