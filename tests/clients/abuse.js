// Hostile Socket.IO/WebSocket clients for tests/tests/e2e/signaling_abuse.rs, built on the `ws`
// package (the WebSocket client socket.io-client itself uses under node). One mode per run,
// results as JSON lines on stdout; every wait is bounded and the process exits by itself.
//   node abuse.js frame  URL LOCAL_ADDR CLAIMED_BYTES SENT_BYTES HOLD_MS
//       opens an engine.io WebSocket, then writes by hand one text frame whose header claims
//       CLAIMED_BYTES, writes SENT_BYTES of it and waits HOLD_MS: does the server close first?
//   node abuse.js burst  URL LOCAL_ADDR COUNT WAIT_MS
//       opens COUNT WebSockets at once and never sends CONNECT: how many were upgraded, how many
//       refused (HTTP status), and how many the server closed within WAIT_MS.
//   node abuse.js noread URL LOCAL_ADDR TOKEN CALL_ID CALLEE
//       connects with TOKEN, starts a call to CALLEE, and once it is answered stops reading
//       from its TCP socket (it keeps it open); prints {"type":"paused"}.
'use strict';
const WebSocket = require('ws');

const MAX_LIFE_MS = 120000;
setTimeout(() => process.exit(3), MAX_LIFE_MS).unref();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const [mode, base, localAddress, ...rest] = process.argv.slice(2);
const wsUrl = base.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket';

function frame() {
  const [claimed, sent, hold] = rest.map(Number);
  const ws = new WebSocket(wsUrl, { localAddress });
  const started = Date.now();
  let written = 0;
  let closedAt = null;
  ws.on('unexpected-response', (_req, res) => {
    out({ type: 'result', refused: res.statusCode });
    process.exit(0);
  });
  ws.on('error', () => {});
  ws.once('message', () => {
    // The engine.io OPEN packet arrived: the session exists. A masked text frame with a zero
    // mask key (so the payload goes as is) and a 64-bit length.
    const sock = ws._socket;
    sock.on('error', () => {});
    sock.on('close', () => {
      if (closedAt === null) closedAt = Date.now() - started;
    });
    const header = Buffer.alloc(14);
    header[0] = 0x81;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(claimed), 2);
    sock.write(header);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (written < sent && closedAt === null) {
        written += chunk.length;
        if (!sock.write(chunk)) return sock.once('drain', pump);
      }
    };
    pump();
    setTimeout(() => {
      out({ type: 'result', written, closedByServer: closedAt !== null, closedAfterMs: closedAt });
      process.exit(0);
    }, hold);
  });
}

function burst() {
  const [count, waitMs] = rest.map(Number);
  const r = { type: 'result', upgraded: 0, refused: {}, errors: 0, closedByServer: 0 };
  let settled = 0;
  const started = Date.now();
  for (let i = 0; i < count; i++) {
    const ws = new WebSocket(wsUrl, { localAddress });
    ws.on('upgrade', () => r.upgraded++);
    ws.on('unexpected-response', (_req, res) => {
      r.refused[res.statusCode] = (r.refused[res.statusCode] || 0) + 1;
      res.resume();
      settled++;
    });
    ws.on('error', () => {
      r.errors++;
    });
    ws.on('close', () => {
      if (Date.now() - started < waitMs) r.closedByServer++;
    });
  }
  setTimeout(() => {
    out(r);
    process.exit(0);
  }, waitMs);
}

function noread() {
  const [token, callId, callee] = rest;
  const ws = new WebSocket(wsUrl, { localAddress });
  ws.on('error', (e) => out({ type: 'error', message: String(e) }));
  ws.on('close', () => out({ type: 'close' }));
  ws.on('message', (data) => {
    const m = String(data);
    if (m.startsWith('0')) ws.send('40' + JSON.stringify({ token }));
    else if (m === '2') ws.send('3');
    else if (m.startsWith('40')) {
      out({ type: 'connect', data: m.slice(2) });
      ws.send('421' + JSON.stringify(['call:initiate', { callId, calleeId: callee, callType: 'audio', sdp: 'v=0' }]));
    } else if (m.startsWith('42') && m.includes('"call:answer"')) {
      // Answered: from now on nothing is read from the socket, not even heartbeats.
      ws._socket.pause();
      ws.removeAllListeners('message');
      // A socket that is not read from no longer keeps node's event loop alive: without this
      // timer the process would exit here and its connection close, which is not a stall.
      setTimeout(() => process.exit(0), MAX_LIFE_MS);
      out({ type: 'paused' });
    }
  });
}

({ frame, burst, noread })[mode]();
