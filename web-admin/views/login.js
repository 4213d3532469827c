// Log in: email and password; a wrong pair or throttling is said in words.

import { html, useState } from "../vendor/preact-htm.mjs";
import { api } from "../api.js";
import { Field, FormError, errorsOf } from "../ui.js";

export function AuthFrame({ title, children, foot }) {
  document.title = `${title} · Herald`;
  return html`<div class="auth">
    <main id="main" class="auth-card">
      <p class="brand"><img src="/ui/favicon.svg" alt="" width="28" height="28" /><span>Herald</span></p>
      <h1>${title}</h1>
      ${children}
      <p class="auth-foot">${foot}</p>
    </main>
    <aside class="auth-aside" aria-label="About Herald">
      <h2>Server-Sent Events, hosted.</h2>
      <p>Publish over HTTP. Subscribe with the browser's own <code>EventSource</code>. Every reconnect resumes exactly where it left off.</p>
      <pre aria-hidden="true"><code>${'const es = new EventSource(url);\nes.addEventListener("order.created", (e) =>\n  render(JSON.parse(e.data)));'}</code></pre>
    </aside>
  </div>`;
}

export function Login({ onSignedIn }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.post("/api/v1/login", { email, password }, { fields: ["email", "password"] });
      await onSignedIn();
    } catch (err) {
      if (err.status === 401) err.field = undefined; // the pair is wrong, not one field
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const { fields, form } = errorsOf(error);
  return html`<${AuthFrame} title="Log in to Herald"
      foot=${html`New to Herald? <a href="/signup">Create an account</a>`}>
    <form onSubmit=${submit} novalidate>
      <${Field} label="Email" type="email" autocomplete="email" required value=${email} onInput=${setEmail} error=${fields.email} />
      <${Field} label="Password" type="password" autocomplete="current-password" required value=${password}
        onInput=${setPassword} error=${fields.password} />
      <${FormError} error=${form} />
      <button type="submit" class="btn primary wide" disabled=${busy}>Log in</button>
    </form>
  <//>`;
}
