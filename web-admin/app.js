// The app: the URL decides the view; the account (GET /api/v1/me) is the only state shared
// between views, passed down as props. Links are plain <a href>; clicks on same-origin links
// are turned into history.pushState, so reload, back and shared links all work.

import { html, render, useState, useEffect } from "./vendor/preact-htm.mjs";
import { api } from "./api.js";
import { Login } from "./views/login.js";
import { Signup } from "./views/signup.js";
import { Home } from "./views/home.js";
import { Keys } from "./views/keys.js";
import { Channels } from "./views/channels.js";
import { Channel } from "./views/channel.js";
import { Settings } from "./views/settings.js";
import { Account } from "./views/account.js";

export function navigate(path, { replace = false } = {}) {
  if (path === location.pathname + location.search) return;
  history[replace ? "replaceState" : "pushState"](null, "", path);
  window.dispatchEvent(new Event("herald:navigate"));
}

function useLocation() {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => {
      setPath(location.pathname);
      window.scrollTo(0, 0);
    };
    window.addEventListener("popstate", update);
    window.addEventListener("herald:navigate", update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener("herald:navigate", update);
    };
  }, []);
  return path;
}

/** `/t/{tenant}/{section}/{channel}` → its parts, decoded. */
function route(path) {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { view: "root" };
  if (parts[0] === "login" && parts.length === 1) return { view: "login" };
  if (parts[0] === "signup" && parts.length === 1) return { view: "signup" };
  if (parts[0] === "account" && parts.length === 1) return { view: "account" };
  if (parts[0] !== "t" || parts.length < 2) return { view: "missing" };
  const [, tenant, section = "home", channel] = parts;
  if (section === "channels" && channel !== undefined && parts.length === 4) {
    return { view: "channel", tenant, channel };
  }
  if (parts.length > 3 || !["home", "keys", "channels", "settings"].includes(section)) {
    return { view: "missing" };
  }
  return { view: section, tenant };
}

const NAV = [
  ["home", "Overview", ""],
  ["channels", "Channels", "/channels"],
  ["keys", "API keys", "/keys"],
  ["settings", "Settings", "/settings"],
];

function Shell({ me, tenant, section, onLogout, children }) {
  const [menu, setMenu] = useState(false);
  const switchTo = (slug) => navigate(slug === "+new" ? "/account#new-tenant" : `/t/${encodeURIComponent(slug)}`);
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="topbar">
      <a class="brand" href=${tenant ? `/t/${tenant.slug}` : "/"} aria-label="Herald home">
        <img src="/ui/favicon.svg" alt="" width="24" height="24" /><span>Herald</span>
      </a>
      ${me.tenants.length > 0 &&
      html`<div class="switcher">
        <label for="tenant-switch" class="sr-only">Tenant</label>
        <select id="tenant-switch" value=${tenant ? tenant.slug : ""} onChange=${(e) => switchTo(e.currentTarget.value)}>
          ${!tenant && html`<option value="">Choose a tenant</option>`}
          ${me.tenants.map((t) => html`<option value=${t.slug}>${t.name} (${t.slug})</option>`)}
          <option value="+new">+ New tenant…</option>
        </select>
      </div>`}
      <button type="button" class="btn ghost menu-toggle" aria-expanded=${menu} aria-controls="sidenav"
        onClick=${() => setMenu(!menu)}>Menu</button>
      <div class="account">
        <a href="/account" class="muted account-link">${me.account.email}</a>
        <button type="button" class="btn ghost" onClick=${onLogout}>Log out</button>
      </div>
    </header>
    <div class="body">
      ${tenant &&
      html`<nav id="sidenav" class=${"sidenav" + (menu ? " open" : "")} aria-label="Tenant menu">
        <ul>
          ${NAV.map(
            ([key, label, suffix]) => html`<li>
              <a href=${`/t/${encodeURIComponent(tenant.slug)}${suffix}`}
                aria-current=${section === key || (key === "channels" && section === "channel") ? "page" : undefined}
                onClick=${() => setMenu(false)}>${label}</a>
            </li>`,
          )}
        </ul>
        <p class="plan">Plan <strong>${tenant.plan}</strong></p>
      </nav>`}
      <main id="main" tabindex="-1">${children}</main>
    </div>
  </div>`;
}

function NotFound({ what = "page" }) {
  return html`<div class="empty"><h1>Not found</h1><p>There is no such ${what}, or you are not a member of it.</p>
    <p><a href="/">Back to Herald</a></p></div>`;
}

function App() {
  const path = useLocation();
  const [me, setMe] = useState(undefined); // undefined: loading; null: logged out
  const refresh = () =>
    api.get("/api/v1/me").then(
      (m) => (setMe(m), m),
      (e) => {
        if (e.status === 401) setMe(null);
        else setMe({ error: e });
        return null;
      },
    );
  useEffect(() => {
    refresh();
  }, []);

  const r = route(path);
  const publicView = r.view === "login" || r.view === "signup";

  useEffect(() => {
    if (me === undefined || (me && me.error)) return;
    if (me === null && !publicView) navigate("/login", { replace: true });
    if (me && (publicView || r.view === "root")) {
      navigate(me.tenants.length ? `/t/${encodeURIComponent(me.tenants[0].slug)}` : "/account", { replace: true });
    }
  }, [me, path]);

  if (me === undefined) return html`<p class="boot">Loading Herald…</p>`;
  if (me && me.error) return html`<p class="boot" role="alert">${me.error.message}</p>`;
  if (me === null) {
    if (r.view === "signup") return html`<${Signup} onSignedIn=${refresh} />`;
    if (r.view === "login") return html`<${Login} onSignedIn=${refresh} />`;
    return null;
  }
  if (publicView || r.view === "root") return null;

  const logout = async () => {
    try {
      await api.post("/api/v1/logout");
    } finally {
      sessionStorage.clear();
      setMe(null);
      navigate("/login");
    }
  };
  const tenant = r.tenant ? me.tenants.find((t) => t.slug === r.tenant) : null;
  let view;
  if (r.view === "account") view = html`<${Account} me=${me} onChanged=${refresh} />`;
  else if (r.view === "missing") view = html`<${NotFound} />`;
  else if (!tenant) view = html`<${NotFound} what="tenant" />`;
  else {
    const props = { tenant, me, onChanged: refresh, key: tenant.slug };
    view = {
      home: () => html`<${Home} ...${props} />`,
      keys: () => html`<${Keys} ...${props} />`,
      channels: () => html`<${Channels} ...${props} />`,
      channel: () => html`<${Channel} ...${props} channel=${r.channel} key=${tenant.slug + "/" + r.channel} />`,
      settings: () => html`<${Settings} ...${props} />`,
    }[r.view]();
  }
  return html`<${Shell} me=${me} tenant=${tenant} section=${r.view} onLogout=${logout}>${view}<//>`;
}

// Same-origin links navigate inside the app (modifier keys and new tabs keep their meaning).
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/v1/")) return;
  if (url.pathname === location.pathname && url.hash) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});

render(html`<${App} />`, document.getElementById("app"));
