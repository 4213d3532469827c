// Sign up: an account and its first tenant. The slug follows the name until edited by hand.

import { html, useState } from "../vendor/preact-htm.mjs";
import { api } from "../api.js";
import { Field, FormError, errorsOf } from "../ui.js";
import { AuthFrame } from "./login.js";

/** "Acme Inc." → "acme-inc": 3 to 40 of [a-z0-9-], no leading or trailing "-". */
export function slugify(name) {
  return name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/, "");
}

export function Signup({ onSignedIn }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [slug, setSlug] = useState("");
  const [slugEdited, setSlugEdited] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const onName = (v) => {
    setName(v);
    if (!slugEdited) setSlug(slugify(v));
  };
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.post(
        "/api/v1/signup",
        { email, password, tenant: { slug, name } },
        { fields: ["email", "password", "slug", "name"] },
      );
      sessionStorage.setItem("herald:new-account", "1");
      await onSignedIn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const { fields, form } = errorsOf(error);
  return html`<${AuthFrame} title="Create your Herald account"
      foot=${html`Have an account? <a href="/login">Log in</a>`}>
    <form onSubmit=${submit} novalidate>
      <${Field} label="Email" type="email" autocomplete="email" required value=${email} onInput=${setEmail} error=${fields.email} />
      <${Field} label="Password" type="password" autocomplete="new-password" required minlength="10" value=${password}
        onInput=${setPassword} error=${fields.password} hint="At least 10 characters." />
      <${Field} label="Tenant name" autocomplete="organization" required value=${name} onInput=${onName} error=${fields.name}
        hint="Your company or project." />
      <${Field} label="Tenant slug" required value=${slug} error=${fields.slug}
        onInput=${(v) => (setSlug(v), setSlugEdited(true))}
        hint=${html`In every URL: <code>/v1/${slug || "your-slug"}/channels/…</code>`} />
      <${FormError} error=${form} />
      <button type="submit" class="btn primary wide" disabled=${busy}>Sign up</button>
    </form>
  <//>`;
}
