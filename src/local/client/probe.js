/**
 * The standard WebSocket hides why an upgrade failed: a refused token (401/403) and a network
 * error both end in `error` then `close` 1006 (browsers must hide it; Node's global WebSocket
 * does too). In Node.js, when a socket fails before opening, the client repeats the same
 * handshake once with `node:http` to read the status. Browsers have no such way: there a
 * refusal looks like a network error and is retried with back-off (see the README).
 *
 * If the probe's upgrade is accepted (the failure was transient), its socket is closed at once.
 */
export async function probeUpgradeStatus(url, protocols) {
    const proc = globalThis.process;
    if (!proc?.versions?.node)
        return undefined;
    let target;
    try {
        target = new URL(url);
    }
    catch {
        return undefined;
    }
    const secure = target.protocol === "wss:" || target.protocol === "https:";
    let mod;
    try {
        // A computed specifier, so bundlers for browsers leave it alone.
        const name = secure ? "node:https" : "node:http";
        mod = await import(/* @vite-ignore */ /* webpackIgnore: true */ name);
    }
    catch {
        return undefined;
    }
    const key = globalThis.crypto?.getRandomValues
        ? btoa(String.fromCharCode(...globalThis.crypto.getRandomValues(new Uint8Array(16))))
        : "dGhlIHNhbXBsZSBub25jZQ==";
    const headers = {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
    };
    if (protocols?.length)
        headers["Sec-WebSocket-Protocol"] = protocols.join(", ");
    return new Promise((resolve) => {
        let done = false;
        const finish = (status) => {
            if (done)
                return;
            done = true;
            resolve(status);
        };
        try {
            const req = mod.request({
                protocol: secure ? "https:" : "http:",
                hostname: target.hostname.replace(/^\[|\]$/g, ""),
                port: target.port || (secure ? 443 : 80),
                path: target.pathname + target.search,
                method: "GET",
                headers,
                timeout: 10_000,
            }, (res) => {
                res.resume();
                req.destroy();
                finish(res.statusCode);
            });
            req.on("upgrade", (_res, socket) => {
                socket.destroy();
                finish(101);
            });
            req.on("timeout", () => {
                req.destroy();
                finish(undefined);
            });
            req.on("error", () => finish(undefined));
            req.end();
        }
        catch {
            finish(undefined);
        }
    });
}
