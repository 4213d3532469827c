// Small shared pieces: form fields with their errors, copy buttons, confirmations, formatting.

import { html, useState, useEffect, useRef } from "./vendor/preact-htm.mjs";

let ids = 0;
/** A stable id for the life of a component, for label/aria wiring. */
export function useId(prefix = "f") {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix}-${++ids}`;
  return ref.current;
}

/** A labelled input; `error` (a string) is shown under it and tied to it by aria-describedby. */
export function Field({ label, error, hint, type = "text", value, onInput, children, multiline, ...rest }) {
  const id = useId("field");
  const described = [error ? `${id}-error` : null, hint ? `${id}-hint` : null].filter(Boolean).join(" ");
  return html`<div class=${"field" + (error ? " has-error" : "")}>
    <label for=${id}>${label}</label>
    ${children ||
    (multiline
      ? html`<textarea id=${id} value=${value} onInput=${(e) => onInput(e.currentTarget.value)}
          aria-invalid=${error ? "true" : undefined} aria-describedby=${described || undefined} ...${rest}></textarea>`
      : html`<input id=${id} type=${type} value=${value}
          onInput=${(e) => onInput(e.currentTarget.value)}
          aria-invalid=${error ? "true" : undefined}
          aria-describedby=${described || undefined} ...${rest} />`)}
    ${hint && html`<p class="hint" id=${`${id}-hint`}>${hint}</p>`}
    ${error && html`<p class="field-error" id=${`${id}-error`}>${error}</p>`}
  </div>`;
}

/** An error not about any one field, announced to screen readers. */
export function FormError({ error }) {
  return error ? html`<p class="form-error" role="alert">${error}</p>` : null;
}

/** Splits an ApiError between the fields it names and the form. */
export function errorsOf(error) {
  if (!error) return { fields: {}, form: null };
  if (error.field) return { fields: { [error.field]: error.message }, form: null };
  return { fields: {}, form: error.message };
}

/** "Copy" button: copies `text`, says "Copied" for a moment. */
export function CopyButton({ text, label = "Copy" }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    setDone(true);
    setTimeout(() => setDone(false), 1500);
  };
  return html`<button type="button" class="btn small" onClick=${copy}>
    ${done ? "Copied" : label}<span class="sr-only" aria-live="polite">${done ? " to the clipboard" : ""}</span>
  </button>`;
}

/** A code block with a Copy button; `name` is its accessible name. */
export function Snippet({ name, code }) {
  return html`<figure class="snippet">
    <figcaption><span>${name.replace(/^Embed snippet: /, "")}</span><${CopyButton} text=${code} /></figcaption>
    <pre role="region" aria-label=${name} tabindex="0"><code>${code}</code></pre>
  </figure>`;
}

/** A modal confirmation on a native <dialog>. `onConfirm` may be async; errors show inside. */
export function Confirm({ open, title, body, action, danger = true, onConfirm, onClose, children, disabled }) {
  const ref = useRef(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) {
      setError(null);
      d.showModal();
    }
    if (!open && d.open) d.close();
  }, [open]);
  const confirm = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      await onConfirm();
      onClose();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<dialog ref=${ref} onClose=${onClose} aria-labelledby=${title ? "dlg-title" : undefined}>
    <form method="dialog" onSubmit=${confirm}>
      <h2 id="dlg-title">${title}</h2>
      ${body && html`<p>${body}</p>`}
      ${children}
      <${FormError} error=${error} />
      <div class="actions">
        <button type="button" class="btn" onClick=${onClose}>Cancel</button>
        <button type="submit" class=${danger ? "btn danger" : "btn primary"} disabled=${busy || disabled}>${action}</button>
      </div>
    </form>
  </dialog>`;
}

/** Loads `load()` on mount and whenever `deps` change: `[data, error, reload]`. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (data) => live && setState({ data, error: null }),
      (error) => live && setState({ data: undefined, error }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return [state.data, state.error, () => setTick((t) => t + 1)];
}

export function Loading({ error, what = "" }) {
  if (error) return html`<p class="form-error" role="alert">${error.message}</p>`;
  return html`<p class="muted" aria-busy="true">Loading${what ? ` ${what}` : ""}…</p>`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const number = new Intl.NumberFormat();

export const fmt = {
  when: (iso) => (iso ? dateTime.format(new Date(iso)) : "never"),
  n: (x) => number.format(x ?? 0),
  ago(iso) {
    if (!iso) return "never";
    const s = Math.round((Date.now() - new Date(iso)) / 1000);
    if (s < 60) return "just now";
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return dateTime.format(new Date(iso));
  },
  duration(secs) {
    if (secs % 86400 === 0) return `${secs / 86400} d`;
    if (secs % 3600 === 0) return `${secs / 3600} h`;
    if (secs % 60 === 0) return `${secs / 60} min`;
    return `${secs} s`;
  },
};

/** Whether the role may change things. Viewers see no write controls at all. */
export const canWrite = (tenant) => tenant.role === "owner" || tenant.role === "admin";

/** The page's heading, with the tenant it shows. */
export function PageHead({ tenant, title, children }) {
  useEffect(() => {
    document.title = `${title} · ${tenant ? tenant.name + " · " : ""}Herald`;
  }, [title, tenant && tenant.slug]);
  return html`<header class="page-head">
    <div>
      ${tenant && html`<p class="eyebrow">${tenant.name} <span class="slug">${tenant.slug}</span>${
        tenant.role === "viewer" ? html` <span class="badge">read-only</span>` : ""
      }</p>`}
      <h1>${title}</h1>
    </div>
    ${children && html`<div class="head-actions">${children}</div>`}
  </header>`;
}
