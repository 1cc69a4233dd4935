// Why: the outbox, reconnect and call-client tests run against a real socket.io server (the
// `socket.io` package, in this process), not a stand-in for one.
import { createServer } from "node:http";

import { Server } from "socket.io";

/**
 * A socket.io server acking every event with `answer(event, data)` (default `{ok: true, echo}`);
 * `hold` names events it leaves unanswered once and drops the socket for.
 */
export async function startServer(port = 0, hold = new Set(), answer = (event, data) => ({ ok: true, echo: data })) {
  const http = createServer();
  const srv = new Server(http);
  const seen = [];
  srv.on("connection", (s) => {
    s.onAny((event, data, ack) => {
      seen.push([event, data]);
      if (hold.delete(event)) {
        s.conn.close();
        return;
      }
      if (typeof ack === "function") ack(answer(event, data));
    });
  });
  await new Promise((resolve) => http.listen(port, "127.0.0.1", () => resolve(undefined)));
  const addr = /** @type {import("node:net").AddressInfo} */ (http.address());
  return {
    url: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    srv,
    seen,
    /** Closes every client's transport, as a network drop would. */
    dropAll: () => {
      for (const s of srv.sockets.sockets.values()) s.conn.close();
    },
    stop: () => new Promise((resolve) => srv.close(() => resolve(undefined))),
  };
}

