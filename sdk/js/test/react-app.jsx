// The React page of browser.test.js: one component on useHeraldChannel, in strict mode.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { useHeraldChannel } from "@herald/client/react";

const params = new URLSearchParams(location.search);

function Orders() {
  const { events, status, last } = useHeraldChannel("orders", {
    baseUrl: params.get("base"),
    tenant: "acme",
    events: ["order.created"],
  });
  return (
    <main>
      <p role="status">{status}</p>
      <p>latest: {last ? `order ${last.data.id}` : "none"}</p>
      <ul aria-label="orders">
        {events.map((e) => (
          <li key={e.id}>order {e.data.id}</li>
        ))}
      </ul>
    </main>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <Orders />
  </StrictMode>,
);
