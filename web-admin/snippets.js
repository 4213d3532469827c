// The copy-paste snippets of the get-started panel and a channel's Embed tab: plain strings,
// exact for one tenant and channel. A personal channel `<name>@<user>` needs a token whose `sub`
// is `<user>`; a private one a token that grants it.

const q = (s) => JSON.stringify(s);

export function streamUrl(origin, tenant, channel) {
  return `${origin}/v1/${encodeURIComponent(tenant)}/channels/${encodeURIComponent(channel)}/events`;
}

export function publishUrl(origin, tenant, channel) {
  return streamUrl(origin, tenant, channel);
}

export function curlPublish(origin, tenant, channel, key = "$HERALD_KEY", event = "hello", data = { text: "Hello, Herald!" }) {
  return `curl -s -X POST ${publishUrl(origin, tenant, channel)} \\
  -H 'authorization: Bearer ${key}' \\
  -H 'content-type: application/json' \\
  -d '${JSON.stringify({ event, data })}'`;
}

/** A whole HTML page that shows the channel's events as they arrive. */
export function htmlPage(origin, tenant, channel, { event = "hello", private: priv = false } = {}) {
  const url = streamUrl(origin, tenant, channel);
  const open = priv
    ? `  // Your server mints the token (see the server-side snippets); never put an API key in a page.
  const token = await (await fetch("/your-token-endpoint")).text();
  const es = new EventSource(${q(url)} + "?token=" + encodeURIComponent(token));`
    : `  const es = new EventSource(${q(url)});`;
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>${channel} · live</title>
<ul id="events"></ul>
<script type="module">
${open}
  const show = (e) => {
    const li = document.createElement("li");
    li.textContent = e.type + " " + e.data;
    document.getElementById("events").append(li);
  };
  es.addEventListener(${q(event)}, show);
  es.onmessage = show; // events published without a type ("message")
  es.addEventListener("herald.gap", (e) => {
    // Some events could not be replayed after a reconnect: refetch your state.
    console.warn("gap", JSON.parse(e.data));
  });
</script>
</html>
`;
}

export function sdkSnippet(origin, tenant, channel, { event = "hello", private: priv = false } = {}) {
  const credential = priv
    ? `  getToken: async () => (await fetch("/your-token-endpoint")).text(),`
    : "";
  return `import { subscribe } from "@herald/client";

const sub = subscribe({
  baseUrl: ${q(origin)},
  tenant: ${q(tenant)},
  channels: [${q(channel)}],
${credential ? credential + "\n" : ""}});
sub.on(${q(event)}, (data, meta) => {
  console.log(meta.id, data);
});
`;
}

function grant(channel) {
  const at = channel.indexOf("@");
  const user = at > 0 && at < channel.length - 1 ? channel.slice(at + 1) : null;
  return user ? { channels: [], sub: user } : { channels: [channel], sub: "user-42" };
}

export function tokenCurl(origin, tenant, channel) {
  const body = { ...grant(channel), ttl_seconds: 3600 };
  return `# On your server, with an API key of the subscribe scope:
curl -s -X POST ${origin}/v1/${tenant}/tokens \\
  -H "authorization: Bearer $HERALD_KEY" \\
  -H 'content-type: application/json' \\
  -d '${JSON.stringify(body)}'
# → {"token":"…","expires_at":"…"}`;
}

export function tokenNode(origin, tenant, channel) {
  const body = { ...grant(channel), ttl_seconds: 3600 };
  return `// Node 18+, on your server (e.g. behind GET /your-token-endpoint, after your own login check):
const res = await fetch(${q(`${origin}/v1/${tenant}/tokens`)}, {
  method: "POST",
  headers: {
    authorization: \`Bearer \${process.env.HERALD_KEY}\`,
    "content-type": "application/json",
  },
  body: JSON.stringify(${JSON.stringify(body)}),
});
const { token } = await res.json();
`;
}

export function tokenPython(origin, tenant, channel) {
  const body = { ...grant(channel), ttl_seconds: 3600 };
  const py = JSON.stringify(body).replace(/:/g, ": ").replace(/,/g, ", ").replace(/\[\]/g, "[]");
  return `# Python 3, on your server; standard library only.
import json, os, urllib.request

req = urllib.request.Request(
    ${q(`${origin}/v1/${tenant}/tokens`)},
    data=json.dumps(${py}).encode(),
    headers={"authorization": "Bearer " + os.environ["HERALD_KEY"],
             "content-type": "application/json"},
    method="POST",
)
token = json.load(urllib.request.urlopen(req))["token"]
`;
}

export function isPersonal(channel) {
  const at = channel.indexOf("@");
  return at > 0 && at < channel.length - 1;
}
