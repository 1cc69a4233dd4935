// Drives socket.io-client (npm) for the e2e tests over stdin/stdout JSON lines, so a Rust test
// can run several named clients in one process. Commands (one JSON object per line on stdin):
//   {"op":"connect","id":"alice","url":"http://127.0.0.1:P","path":"/socket.io","token":"JWT",
//    "headers":{...},"transports":["websocket"],"reconnection":false,"localAddress":"127.0.0.2"}
//   {"op":"emit","id":"alice","event":"call:initiate","data":{...},"req":1}
//   {"op":"disconnect","id":"alice"}            {"op":"exit"}
//   {"op":"pause","id":"alice"}   once on WebSocket (after the upgrade, for a client that
//                                 started on polling), stops reading its TCP socket for good
// Output lines: {"id","type":"connect"|"connect_error"|"disconnect"|"event"|"ack", ...}.
// Every payload sent, every event, ack and handshake answer received is checked against the
// signaling contract (contract.js): a mismatch is a line {"type":"contract_violation","id",
// "event","payload","error"} (also on stderr), on which the Rust harness fails the test.
// Exits by itself after MAX_LIFE_MS so a crashed test cannot leave it running.
'use strict';
const { io } = require('socket.io-client');
const readline = require('readline');
const contract = require('./contract');

const MAX_LIFE_MS = 180000;
setTimeout(() => process.exit(3), MAX_LIFE_MS).unref();

const sockets = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function violation(id, event, payload, error) {
  const line = { id, type: 'contract_violation', event, payload, error };
  process.stderr.write(`contract violation: ${event} at ${id}: ${error}\npayload: ${JSON.stringify(payload)}\n`);
  out(line);
}

// The handshake answers, as the Manager decodes them (CONNECT {sid}, CONNECT_ERROR {message}),
// so a refusal from the server is told apart from socket.io-client's own transport errors.
function watchHandshake(id, s) {
  s.io.on('packet', (packet) => {
    if (packet.nsp !== '/') return;
    const key = { 0: 'connectOk', 4: 'connectError' }[packet.type];
    if (key === undefined) return;
    const err = contract.check(key, packet.data);
    if (err !== null) violation(id, key, packet.data, err);
  });
}

function connect(cmd) {
  const opts = {
    path: cmd.path || '/socket.io',
    transports: cmd.transports || ['websocket'],
    reconnection: cmd.reconnection === true,
    forceNew: true,
    timeout: 5000,
  };
  if (cmd.token !== undefined) {
    opts.auth = { token: cmd.token };
    const err = contract.check('connectAuth', opts.auth);
    if (err !== null) violation(cmd.id, 'connectAuth', opts.auth, err);
  }
  if (cmd.headers) opts.extraHeaders = cmd.headers;
  if (cmd.localAddress) opts.localAddress = cmd.localAddress;
  const s = io(cmd.url, opts);
  sockets.set(cmd.id, s);
  watchHandshake(cmd.id, s);
  s.on('connect', () => out({ id: cmd.id, type: 'connect', sid: s.id }));
  s.on('connect_error', (err) => out({ id: cmd.id, type: 'connect_error', message: err.message }));
  s.on('disconnect', (reason) => out({ id: cmd.id, type: 'disconnect', reason }));
  s.onAny((event, data) => {
    const err = contract.checkEvent(event, data);
    if (err !== null) violation(cmd.id, event, data, err);
    out({ id: cmd.id, type: 'event', event, data });
  });
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
      {
        const sent = contract.checkRequest(cmd.event, cmd.data);
        s.timeout(5000).emit(cmd.event, cmd.data, (err, ack) => {
          const problem = err
            ? sent.sendError && `${cmd.event} was sent outside the contract (${sent.sendError}) and not acked`
            : contract.checkAck(cmd.event, sent, ack);
          if (problem) violation(cmd.id, cmd.event, { sent: cmd.data, ack }, problem);
          out({ id: cmd.id, type: 'ack', req: cmd.req, data: err ? { timeout: true } : ack });
        });
      }
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
