// A tenant's home: the get-started panel (until dismissed) above the dashboard.

import { html, useState, useEffect } from "../vendor/preact-htm.mjs";
import { api, tenantPath } from "../api.js";
import { PageHead, Snippet, CopyButton, FormError, useLoad, Loading, fmt, canWrite } from "../ui.js";
import { UsageChart, lastDays } from "../chart.js";
import { curlPublish, htmlPage, streamUrl } from "../snippets.js";
import { rememberKey, rememberedKey } from "./keys.js";
import { openStream } from "../sse.js";

const FIRST_CHANNEL = "hello";
const dismissedKey = (slug) => `herald:get-started-dismissed:${slug}`;

function GetStarted({ tenant, onDismiss }) {
  const origin = location.origin;
  const [key, setKey] = useState(() => rememberedKey(tenant.slug));
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [first, setFirst] = useState(null);
  const [live, setLive] = useState(false);
  useEffect(() => {
    const stream = openStream(tenant.slug, FIRST_CHANNEL, {
      onEvent: (e) => setFirst((f) => f || e),
      onState: (s) => setLive(s.state === "live"),
    });
    return () => stream.close();
  }, [tenant.slug]);
  const create = async () => {
    setBusy(true);
    setError(null);
    try {
      const k = await api.post(tenantPath(tenant.slug, "keys"), { name: "Get started", scopes: ["publish", "subscribe"] });
      rememberKey(tenant.slug, k.secret);
      setKey(k.secret);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<section class="card get-started" aria-labelledby="gs-title">
    <div class="card-head">
      <h2 id="gs-title">Get started</h2>
      <button type="button" class="btn ghost small" onClick=${onDismiss}>Dismiss</button>
    </div>
    <ol class="steps">
      <li>
        <h3>Your channel URLs</h3>
        <p>Every channel of <strong>${tenant.name}</strong> has a stream at</p>
        <p class="url-pattern"><code>${origin}/v1/${tenant.slug}/channels/<em>{channel}</em>/events</code></p>
        <p class="muted">Channels need no creation: publish to any name and it exists.</p>
      </li>
      <li>
        <h3>Create an API key</h3>
        ${key
          ? html`<div class="secret-box">
              <p class="warn"><strong>Copy this key now.</strong> Herald shows a secret only once.</p>
              <div class="secret-row"><code aria-label="API key secret" class="secret">${key}</code><${CopyButton} text=${key} /></div>
            </div>`
          : canWrite(tenant)
            ? html`<p>Publishing needs a key with the <code>publish</code> scope.</p>
                <button type="button" class="btn primary" disabled=${busy} onClick=${create}>Create key</button>
                <${FormError} error=${error} />`
            : html`<p class="muted">Ask an admin of this tenant for an API key.</p>`}
      </li>
      <li>
        <h3>Open a page that listens</h3>
        <p>Save this as <code>index.html</code> and open it in a browser:</p>
        <${Snippet} name="Embed snippet: HTML" code=${htmlPage(origin, tenant.slug, FIRST_CHANNEL)} />
      </li>
      <li>
        <h3>Publish your first event</h3>
        <${Snippet} name="Publish command: curl" code=${curlPublish(origin, tenant.slug, FIRST_CHANNEL, key || "$HERALD_KEY")} />
        <div role="status" class=${"waiting" + (first ? " arrived" : "")}>
          ${first
            ? html`<span class="dot" aria-hidden="true"></span> Your first event arrived: <code>${first.type}</code> ${first.data}`
            : live
              ? html`<span class="dot pulse" aria-hidden="true"></span> Waiting for your first event on <code>${FIRST_CHANNEL}</code>…`
              : html`<span class="dot" aria-hidden="true"></span> Connecting to <code>${FIRST_CHANNEL}</code>…`}
        </div>
      </li>
    </ol>
  </section>`;
}

function Stat({ label, value, of, hint }) {
  // null: not known right now (the broker is unreachable).
  const known = value !== null && value !== undefined;
  const pct = of && known ? Math.min(100, (100 * value) / of) : null;
  return html`<div class="stat">
    <p class="stat-label">${label}</p>
    <p class="stat-value">${known ? fmt.n(value) : "—"}${of ? html`<span class="of"> / ${fmt.n(of)}</span>` : ""}</p>
    ${pct !== null &&
    html`<div class="meter" aria-hidden="true"><span class=${"meter-fill" + (pct > 80 ? " hot" : "")} style=${{ width: `${Math.max(pct, 1)}%` }}></span></div>`}
    ${hint && html`<p class="hint">${hint}</p>`}
  </div>`;
}

function Dashboard({ tenant }) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 5000);
    return () => clearInterval(t);
  }, []);
  const [data, error] = useLoad(
    () =>
      Promise.all([
        api.get(tenantPath(tenant.slug, "limits")),
        api.get(tenantPath(tenant.slug, "usage") + "?days=30"),
        api.get(tenantPath(tenant.slug, "channels")),
      ]),
    [tenant.slug, tick],
  );
  if (!data) return html`<${Loading} error=${error} what="usage" />`;
  const [limits, usage, channels] = data;
  const rows = lastDays(usage);
  const today = rows[rows.length - 1];
  const now = channels.reduce((n, c) => n + c.subscribers, 0);
  return html`<section aria-labelledby="dash-title" class="dashboard">
    <h2 id="dash-title">Usage</h2>
    <div class="stats">
      <${Stat} label="Connections now" value=${limits.today.connections} of=${limits.limits.max_connections}
        hint=${`Peak today: ${fmt.n(limits.today.peak_connections)} · on configured channels now: ${fmt.n(now)}`} />
      <${Stat} label="Messages today" value=${limits.today.messages} of=${limits.limits.messages_per_day}
        hint=${`Daily quota of the ${limits.plan} plan (UTC)`} />
      <${Stat} label="Deliveries today" value=${today.deliveries} hint="Events written to subscribers" />
    </div>
    <div class="card">
      <h3>Last 30 days</h3>
      <${UsageChart} rows=${rows} />
    </div>
  </section>`;
}

export function Home({ tenant }) {
  const [dismissed, setDismissed] = useState(() => localStorage.getItem(dismissedKey(tenant.slug)) === "1");
  const dismiss = () => {
    localStorage.setItem(dismissedKey(tenant.slug), "1");
    setDismissed(true);
  };
  return html`<div>
    <${PageHead} tenant=${tenant} title="Overview">
      ${dismissed && html`<button type="button" class="btn ghost small" onClick=${() => (localStorage.removeItem(dismissedKey(tenant.slug)), setDismissed(false))}>Show get started</button>`}
    <//>
    ${!dismissed && html`<${GetStarted} tenant=${tenant} onDismiss=${dismiss} />`}
    <${Dashboard} tenant=${tenant} />
  </div>`;
}

export { streamUrl };
