// The inspector's stream reader. `EventSource` has no way to listen to every event type (a
// listener needs the type's name in advance), and an inspector must show types it has never
// heard of; so it reads the same `text/event-stream` with fetch and parses it by the rules of
// the HTML standard's EventSource (fields, CR/LF/CRLF, `retry:`), reconnecting like
// EventSource does: after `retry` ms, with `Last-Event-ID`, so no event is lost or shown twice.
// Every (re)connect mints a fresh short-lived subscriber token through the session, so private
// and personal channels work as well as public ones.

import { api, tenantPath, streamUrl } from "./api.js";

export function openStream(slug, channel, { onEvent, onState = () => {} }) {
  const ctrl = new AbortController();
  let lastId = null;
  let retry = 2000;
  let closed = false;

  async function connect() {
    onState({ state: "connecting" });
    let token;
    try {
      ({ token } = await api.post(tenantPath(slug, "channels", channel, "token")));
    } catch (err) {
      if (closed) return;
      onState({ state: "error", message: err.message });
      if (err.status === 401 || err.status === 404) return; // logged out, or no such tenant
      return later();
    }
    const headers = lastId ? { "last-event-id": lastId } : {};
    let response;
    try {
      response = await fetch(`${streamUrl(slug, channel)}?token=${encodeURIComponent(token)}`, {
        headers,
        signal: ctrl.signal,
        cache: "no-store",
      });
    } catch {
      return later();
    }
    if (!response.ok || !(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
      const problem = await response.json().catch(() => null);
      onState({ state: "error", message: (problem && problem.detail) || `the stream answered ${response.status}` });
      if (response.status >= 400 && response.status < 500 && response.status !== 429) return;
      return later();
    }
    onState({ state: "live" });
    try {
      await read(response.body);
    } catch {
      // aborted or cut: reconnect below unless closed
    }
    later();
  }

  function later() {
    if (closed) return;
    onState({ state: "reconnecting" });
    setTimeout(() => !closed && connect(), retry);
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    let type = "";
    let id = null;
    const dispatch = () => {
      if (id !== null) lastId = id;
      if (data.length) onEvent({ type: type || "message", data: data.join("\n"), id: id !== null ? id : null, at: new Date() });
      data = [];
      type = "";
      id = null;
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let m;
      while ((m = /\r\n|\r|\n/.exec(buffer))) {
        // A lone CR at the end may be the first half of a CRLF: wait for more.
        if (m[0] === "\r" && m.index === buffer.length - 1) break;
        const line = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        if (line === "") {
          dispatch();
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? "" : line.slice(colon + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "data") data.push(v);
        else if (field === "event") type = v;
        else if (field === "id" && !v.includes("\0")) id = v;
        else if (field === "retry" && /^\d+$/.test(v)) retry = Number(v);
      }
    }
  }

  connect();
  return {
    close() {
      closed = true;
      ctrl.abort();
    },
  };
}
