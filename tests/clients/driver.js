// Drives socket.io-client (npm) for the e2e tests over stdin/stdout JSON lines, so a Rust test
// can run several named clients in one process. Commands (one JSON object per line on stdin):
//   {"op":"connect","id":"alice","url":"http://127.0.0.1:P","path":"/socket.io","token":"JWT",
//    "headers":{...},"transports":["websocket"],"reconnection":false,"localAddress":"127.0.0.2"}
//   {"op":"emit","id":"alice","event":"call:initiate","data":{...},"req":1}
//   {"op":"disconnect","id":"alice"}            {"op":"exit"}
//   {"op":"pause","id":"alice"}   once on WebSocket (after the upgrade, for a client that
//                                 started on polling), stops reading its TCP socket for good
// Output lines: {"id","type":"connect"|"connect_error"|"disconnect"|"event"|"ack", ...}.
// Exits by itself after MAX_LIFE_MS so a crashed test cannot leave it running.
'use strict';
const { io } = require('socket.io-client');
const readline = require('readline');

const MAX_LIFE_MS = 180000;
setTimeout(() => process.exit(3), MAX_LIFE_MS).unref();

const sockets = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function connect(cmd) {
  const opts = {
    path: cmd.path || '/socket.io',
    transports: cmd.transports || ['websocket'],
    reconnection: cmd.reconnection === true,
    forceNew: true,
    timeout: 5000,
  };
  if (cmd.token !== undefined) opts.auth = { token: cmd.token };
  if (cmd.headers) opts.extraHeaders = cmd.headers;
  if (cmd.localAddress) opts.localAddress = cmd.localAddress;
  const s = io(cmd.url, opts);
  sockets.set(cmd.id, s);
  s.on('connect', () => out({ id: cmd.id, type: 'connect', sid: s.id }));
  s.on('connect_error', (err) => out({ id: cmd.id, type: 'connect_error', message: err.message }));
  s.on('disconnect', (reason) => out({ id: cmd.id, type: 'disconnect', reason }));
  s.onAny((event, data) => out({ id: cmd.id, type: 'event', event, data }));
}

// The engine's WebSocket is the `ws` package's under node; pausing its TCP socket makes this a
// client that stops reading (heartbeats included) while keeping the connection open.
function pause(id, s) {
  const engine = s.io.engine;
  const stop = () => {
    engine.transport.ws._socket.pause();
    out({ id, type: 'paused', transport: engine.transport.name });
  };
  if (engine.transport.name === 'websocket') stop();
  else engine.once('upgrade', stop);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ type: 'driver_error', message: 'bad command: ' + line });
    return;
  }
  const s = sockets.get(cmd.id);
  switch (cmd.op) {
    case 'connect':
      connect(cmd);
      break;
    case 'emit':
      if (!s) return out({ id: cmd.id, type: 'driver_error', message: 'no such client' });
      s.timeout(5000).emit(cmd.event, cmd.data, (err, ack) => {
        out({ id: cmd.id, type: 'ack', req: cmd.req, data: err ? { timeout: true } : ack });
      });
      break;
    case 'disconnect':
      if (s) s.disconnect();
      break;
    case 'pause':
      if (!s) return out({ id: cmd.id, type: 'driver_error', message: 'no such client' });
      pause(cmd.id, s);
      break;
    case 'exit':
      process.exit(0);
  }
});
rl.on('close', () => process.exit(0));
