// The account: change the password, create another tenant.

import { html, useState } from "../vendor/preact-htm.mjs";
import { api } from "../api.js";
import { PageHead, Field, FormError, errorsOf } from "../ui.js";
import { navigate } from "../app.js";
import { slugify } from "./signup.js";

function Password() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [error, setError] = useState(null);
  const [done, setDone] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setDone(false);
    try {
      await api.post("/api/v1/me/password", { current_password: current, new_password: next }, { fields: ["password"] });
      setCurrent("");
      setNext("");
      setDone(true);
    } catch (err) {
      err.field = err.code === "forbidden" ? "current" : err.field ? "next" : undefined;
      setError(err);
    }
  };
  const { fields, form } = errorsOf(error);
  return html`<form class="card form-grid" onSubmit=${submit} aria-labelledby="pw-title">
    <h2 id="pw-title">Change password</h2>
    <${Field} label="Current password" type="password" autocomplete="current-password" value=${current} onInput=${setCurrent} error=${fields.current} />
    <${Field} label="New password" type="password" autocomplete="new-password" value=${next} onInput=${setNext} error=${fields.next} hint="At least 10 characters. Your other sessions end." />
    <${FormError} error=${form} />
    ${done && html`<p role="status" class="ok">Password changed.</p>`}
    <div><button type="submit" class="btn primary">Change password</button></div>
  </form>`;
}

function NewTenant({ onChanged }) {
  const [name, setName] = useState("");
  const [slug, setSlug] = useState("");
  const [edited, setEdited] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const t = await api.post("/api/v1/tenants", { slug, name }, { fields: ["slug", "name"] });
      await onChanged();
      navigate(`/t/${t.slug}`);
    } catch (err) {
      setError(err);
    }
  };
  const { fields, form } = errorsOf(error);
  return html`<form class="card form-grid" id="new-tenant" onSubmit=${submit} aria-labelledby="nt-title">
    <h2 id="nt-title">New tenant</h2>
    <${Field} label="Tenant name" value=${name} onInput=${(v) => (setName(v), !edited && setSlug(slugify(v)))} error=${fields.name} />
    <${Field} label="Tenant slug" value=${slug} onInput=${(v) => (setSlug(v), setEdited(true))} error=${fields.slug} />
    <${FormError} error=${form} />
    <div><button type="submit" class="btn primary">Create tenant</button></div>
  </form>`;
}

export function Account({ me, onChanged }) {
  return html`<div>
    <${PageHead} title="Your account" />
    <p class="muted">Signed in as <strong>${me.account.email}</strong> since ${new Date(me.account.created_at).toLocaleDateString()}.</p>
    ${me.tenants.length === 0 && html`<p>You are not a member of any tenant. Create one below.</p>`}
    <${Password} />
    <${NewTenant} onChanged=${onChanged} />
  </div>`;
}
