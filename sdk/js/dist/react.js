import { useEffect, useRef, useState } from "react";
import { subscribe } from "./subscribe.js";
/**
 * Subscribes while the component is mounted. The subscription is opened by the effect and
 * closed by its clean-up, so React's strict mode (mount, unmount, mount) leaves exactly one
 * stream open. It is reopened when the channel, the stream's address or the event types change;
 * other options (callbacks) are read from the latest render.
 */
export function useHeraldChannel(channel, options) {
    const [state, setState] = useState({
        last: undefined,
        events: [],
        status: "connecting",
        gap: undefined,
    });
    const latest = useRef(options);
    latest.current = options;
    const types = options.events ?? ["message"];
    const key = JSON.stringify([channel, options.baseUrl, options.tenant, options.token, types]);
    useEffect(() => {
        const o = latest.current;
        const keep = o.keep ?? 100;
        setState({ last: undefined, events: [], status: "connecting", gap: undefined });
        const sub = subscribe({
            ...o,
            channels: channel,
            getToken: o.getToken && (() => latest.current.getToken()),
            onStatus: (status) => setState((s) => ({ ...s, status })),
            onGap: (gap) => {
                setState((s) => ({ ...s, gap }));
                latest.current.onGap?.(gap);
            },
        });
        for (const type of types) {
            sub.on(type, (data, meta) => {
                const event = { ...meta, data };
                setState((s) => ({ ...s, last: event, events: [...s.events, event].slice(-keep) }));
            });
        }
        return () => sub.close();
        // `key` covers channel, address and types; callbacks are read through `latest`.
        // eslint-disable-next-line react-hooks/exhaustive-deps
    }, [key]);
    return state;
}
