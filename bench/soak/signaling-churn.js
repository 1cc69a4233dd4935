// The soak's signaling churn (bench/soak.sh): pairs of socket.io-client users (npm, from
// tests/clients/node_modules) that connect, fetch their ICE config, call, answer, drop and
// reconnect, reject, cancel and hang up, over and over, so that a socket, a call record, a slot
// or a deadline the service fails to release shows up as growth in the soak's samples.
//   node bench/soak/signaling-churn.js --url http://127.0.0.1:P --jwt-secret S --seconds N
//        [--pairs 4] [--grace-secs 2]
// Every step waits at most STEP_MS; the whole run ends by --seconds plus MAX_OVERRUN_MS whatever
// happens. Prints one JSON summary line and exits 1 if more than a tenth of the calls failed.
'use strict';
const path = require('path');
const http = require('http');
const crypto = require('crypto');
const { io } = require(path.join(__dirname, '../../tests/clients/node_modules/socket.io-client'));

const STEP_MS = 5000;
const MAX_OVERRUN_MS = 60000;
// Clients come from many loopback addresses, as real ones come from many hosts, so that the
// per-address connect limit (socket_connects_per_ip, 60 a minute) stays on.
const SOURCE_ADDRESSES = 200;
const USERS_PER_PAIR = 8;

function parseArgs(argv) {
  const args = { pairs: 4, 'grace-secs': 2 };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`usage: signaling-churn.js --url U --jwt-secret S --seconds N [--pairs P] [--grace-secs G]; bad ${argv[i]}`);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const need of ['url', 'jwt-secret', 'seconds']) {
    if (args[need] === undefined) throw new Error(`--${need} is required`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const deadline = Date.now() + Number(args.seconds) * 1000;
setTimeout(() => {
  console.error('signaling-churn: still running past its deadline, giving up');
  process.exit(2);
}, Number(args.seconds) * 1000 + MAX_OVERRUN_MS).unref();

const b64url = (buf) => Buffer.from(buf).toString('base64url');
function token(user) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub: user, iat: now, exp: now + 3600 }));
  const sig = crypto.createHmac('sha256', args['jwt-secret']).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

let nextSource = 0;
function sourceAddress() {
  nextSource = (nextSource + 1) % SOURCE_ADDRESSES;
  return `127.0.1.${nextSource + 1}`;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A connected client that queues every server event, so a step can wait for one that came first.
async function connect(user) {
  const s = io(args.url, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: STEP_MS,
    auth: { token: token(user) },
    localAddress: sourceAddress(),
  });
  const events = [];
  const waiters = [];
  s.onAny((event, data) => {
    events.push({ event, data });
    for (const w of waiters.splice(0)) w();
  });
  s.nextEvent = (event, callId) => {
    const found = () => events.findIndex((e) => e.event === event && (!callId || (e.data && e.data.callId === callId)));
    return withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const i = found();
          if (i >= 0) resolve(events.splice(i, 1)[0].data);
          else waiters.push(check);
        };
        check();
      }),
      STEP_MS * 2,
      `${event} at ${user}`,
    );
  };
  await withTimeout(
    new Promise((resolve, reject) => {
      s.once('connect', resolve);
      s.once('connect_error', (e) => reject(new Error(`connect ${user}: ${e.message}`)));
    }),
    STEP_MS,
    `connect of ${user}`,
  );
  return s;
}

async function ack(s, event, data) {
  let reply;
  try {
    reply = await s.timeout(STEP_MS).emitWithAck(event, data);
  } catch (e) {
    throw new Error(`${event}: no ack within ${STEP_MS} ms (${e.message})`);
  }
  if (!reply || reply.ok !== true) throw new Error(`${event}: ${JSON.stringify(reply)}`);
  return reply;
}

function iceServers(user) {
  return new Promise((resolve, reject) => {
    const req = http.get(
      `${args.url}/v1/ice-servers`,
      { headers: { authorization: `Bearer ${token(user)}` }, localAddress: sourceAddress(), timeout: STEP_MS },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`ice-servers: HTTP ${res.statusCode}`))));
      },
    );
    req.on('timeout', () => req.destroy(new Error('ice-servers: timed out')));
    req.on('error', reject);
  });
}

const SDP = 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';

// Rings `callee` from `caller`; returns the call id once the callee has the offer.
async function ring(caller, callee, calleeId, callType) {
  const callId = crypto.randomUUID();
  await ack(caller, 'call:initiate', { callId, calleeId, chatId: `chat-${calleeId}`, callType, sdp: SDP });
  await callee.nextEvent('call:offer', callId);
  return callId;
}

// Rings `callee` from `caller` and answers; returns the call id.
async function answeredCall(caller, callee, calleeId) {
  const callId = await ring(caller, callee, calleeId, 'audio');
  await ack(callee, 'call:answer', { callId, sdp: SDP });
  await caller.nextEvent('call:answer', callId);
  await ack(caller, 'call:ice-candidate', { callId, candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0' } });
  await callee.nextEvent('call:ice-candidate', callId);
  return callId;
}

// Each scenario starts with both users connected and leaves nothing open.
const SCENARIOS = {
  async hangup(a, b, ids) {
    const callId = await answeredCall(a, b, ids.b);
    await ack(a, 'call:end', { callId });
    await b.nextEvent('call:end', callId);
  },
  async reject(a, b, ids) {
    const callId = await ring(a, b, ids.b, 'video');
    await ack(b, 'call:reject', { callId });
    await a.nextEvent('call:reject', callId);
  },
  async cancel(a, b, ids) {
    const callId = await ring(a, b, ids.b, 'audio');
    await ack(a, 'call:end', { callId });
    await b.nextEvent('call:cancelled', callId);
  },
  // The callee's socket drops mid-call; it reconnects within the grace, resumes with call:sync
  // and hangs up.
  async reconnect(a, b, ids, sockets) {
    const callId = await answeredCall(a, b, ids.b);
    b.disconnect();
    const b2 = await connect(ids.b);
    sockets.push(b2);
    const sync = await ack(b2, 'call:sync', { callIds: [callId] });
    if (!sync.calls || !sync.calls.some((c) => c.callId === callId)) throw new Error(`call:sync lost the call: ${JSON.stringify(sync)}`);
    await ack(b2, 'call:end', { callId });
    await a.nextEvent('call:end', callId);
  },
  // The caller's socket drops for good: the callee hears of it once the grace has passed.
  async drop(a, b, ids) {
    const callId = await answeredCall(a, b, ids.b);
    a.disconnect();
    const end = await b.nextEvent('call:end', callId);
    if (end.reason !== 'peer-disconnected') throw new Error(`drop: call:end ${JSON.stringify(end)}`);
  },
};
const NAMES = Object.keys(SCENARIOS);

const stats = { iterations: 0, ok: 0, failed: 0, byScenario: {}, errors: [] };

async function pairLoop(pair) {
  for (let i = pair; Date.now() < deadline; i++) {
    // Each pair takes turns over USERS_PER_PAIR users, so that no user starts more calls a
    // minute than the per-user limit of /v1/ice-servers (rate_limit_per_user, 30) allows.
    const ids = { a: `soak-a${pair}-${i % USERS_PER_PAIR}`, b: `soak-b${pair}-${i % USERS_PER_PAIR}` };
    const name = NAMES[i % NAMES.length];
    const sockets = [];
    const failedBefore = stats.failed;
    stats.iterations++;
    try {
      await iceServers(ids.a);
      sockets.push(await connect(ids.a), await connect(ids.b));
      await SCENARIOS[name](sockets[0], sockets[1], ids, sockets);
      stats.ok++;
      stats.byScenario[name] = (stats.byScenario[name] || 0) + 1;
    } catch (e) {
      stats.failed++;
      if (stats.errors.length < 5) stats.errors.push(`${name} (pair ${pair}): ${e.message}`);
    } finally {
      for (const s of sockets) s.disconnect();
    }
    // A failed step may leave the pair's call alive until the grace ends it; the next call
    // would only meet it as "busy".
    if (stats.failed > failedBefore) await new Promise((r) => setTimeout(r, (Number(args['grace-secs']) + 1) * 1000));
  }
}

Promise.all(Array.from({ length: Number(args.pairs) }, (_, p) => pairLoop(p))).then(() => {
  console.log(JSON.stringify(stats));
  process.exit(stats.ok > 0 && stats.failed * 10 <= stats.iterations ? 0 : 1);
});
