// The signaling contract (signaling/contract/asyncapi.json and its JSON Schemas) for the e2e
// clients: driver.js checks every payload it sends, every event and every ack it receives
// against it, and records which of the contract's messages the suite saw, so a server change
// that breaks the contract fails the e2e tests and a message no test exercises is noticed.
// The validator is ajv (npm), not code of this repository.
//
// As a program (one JSON document on stdin where needed):
//   node contract.js check MESSAGE      validates stdin against MESSAGE (e.g. iceServers) and
//                                       records it as seen; exit 1 with the schema errors
//   node contract.js coverage DIR       every message of the contract was seen by the suite
//                                       (records in DIR) or is in NOT_COVERED with a reason
//   node contract.js serve              the checks for another driver (py_driver.py), one JSON
//                                       line in, one out: {kind: "event"|"request"|"ack"|
//                                       "message", name, data, sent?} -> {error, sent?}
//   node contract.js lint               asyncapi.json is a valid AsyncAPI 3.0 document (the
//                                       official schema, @asyncapi/specs), its references
//                                       resolve and every schema file is used
'use strict';
const fs = require('fs');
const path = require('path');
const Ajv2020 = require('ajv/dist/2020');

const CONTRACT_DIR = path.join(__dirname, '..', '..', 'signaling', 'contract');
const SEEN_DIR =
  process.env.E2E_CONTRACT_LOG || path.join(__dirname, '..', '..', 'target', 'e2e-logs', 'contract');

// Messages of the contract no e2e test produces, and why. An entry that is seen anyway fails the
// coverage check, so this list cannot go stale.
const NOT_COVERED = {};

// Error codes a request outside the contract must be refused with: its shape is checked before
// anything else (the size first).
const SHAPE_ERRORS = ['bad_request', 'payload_too_large'];

/// Follows `$ref`s inside the AsyncAPI document.
function deref(doc, node) {
  for (let i = 0; node && node.$ref && node.$ref.startsWith('#/') && i < 8; i++) {
    node = node.$ref
      .slice(2)
      .split('/')
      .reduce((at, key) => (at === undefined ? undefined : at[key.replace(/~1/g, '/').replace(/~0/g, '~')]), doc);
  }
  if (!node || node.$ref) throw new Error('contract: unresolvable reference in asyncapi.json');
  return node;
}

/// A message's key in components.messages, from a reference to it (`#/channels/c/messages/k`).
const keyOf = (ref) => ref.$ref.split('/').pop();

function load(dir = CONTRACT_DIR) {
  const doc = JSON.parse(fs.readFileSync(path.join(dir, 'asyncapi.json'), 'utf8'));
  const ajv = new Ajv2020({ allErrors: true });
  const schemaDir = path.join(dir, 'schemas');
  const ids = new Map();
  for (const file of fs.readdirSync(schemaDir).filter((f) => f.endsWith('.json')).sort()) {
    const schema = JSON.parse(fs.readFileSync(path.join(schemaDir, file), 'utf8'));
    ajv.addSchema(schema);
    ids.set('schemas/' + file, schema.$id);
  }
  // Every message with a payload: key -> {name, validate}.
  const messages = new Map();
  for (const [key, m] of Object.entries(doc.components.messages)) {
    if (!m.payload) continue;
    const id = ids.get(m.payload.$ref);
    if (!id) throw new Error(`contract: message ${key} refers to a missing schema ${m.payload.$ref}`);
    const validate = ajv.getSchema(id);
    if (!validate) throw new Error(`contract: schema ${id} does not compile`);
    messages.set(key, { key, name: m.name, validate });
  }
  const requests = new Map();
  const events = new Map();
  for (const op of Object.values(doc.operations)) {
    const channel = deref(doc, op.channel);
    if (channel.address !== '/') continue;
    for (const ref of op.messages) {
      const m = messages.get(keyOf(ref));
      // The handshake is checked where the driver connects (connectAuth, connectOk, connectError).
      if (op.action === 'send') events.set(m.name, m);
      else if (m.name !== 'connect') {
        requests.set(m.name, { message: m, replies: op.reply.messages.map((r) => messages.get(keyOf(r))) });
      }
    }
  }
  return { messages, requests, events };
}

const contract = load();

/// The schema errors of `data` against message `key`, as one line; null when it conforms.
function errors(key, data) {
  const m = contract.messages.get(key);
  if (!m) return `no message ${key} in the contract`;
  if (m.validate(data)) return null;
  return m.validate.errors.map((e) => `${e.instancePath || '/'} ${e.message} (${e.schemaPath})`).join('; ');
}

const seen = new Set();
/// Notes that `key` passed through the suite (once per process, appended to a file of its own).
function record(key) {
  if (seen.has(key)) return;
  seen.add(key);
  try {
    fs.mkdirSync(SEEN_DIR, { recursive: true });
    fs.appendFileSync(path.join(SEEN_DIR, `seen-${process.pid}.jsonl`), JSON.stringify({ message: key }) + '\n');
  } catch (e) {
    process.stderr.write(`contract: cannot record ${key} in ${SEEN_DIR}: ${e.message}\n`);
  }
}

/// Checks `data` against `key`: the errors, or null (and the message is recorded as seen).
function check(key, data) {
  const err = errors(key, data);
  if (err === null) record(key);
  return err;
}

/// An event the server sent: null, or what is wrong with it.
function checkEvent(name, data) {
  const m = contract.events.get(name);
  if (!m) return `the server sent ${name}, which the contract does not list`;
  return check(m.key, data);
}

/// Checks a request before it is sent: {known, sendError}. A payload outside the contract is
/// allowed to be sent (tests send bad input on purpose) but must then be refused, see checkAck.
function checkRequest(name, data) {
  const spec = contract.requests.get(name);
  if (!spec) return { known: false, sendError: null };
  return { known: true, sendError: errors(spec.message.key, data) };
}

/// The server's ack of request `name`, sent as checked by checkRequest: null, or what is wrong.
function checkAck(name, sent, ack) {
  const spec = contract.requests.get(name);
  if (!sent.known) {
    const err = check('ackUnknownEvent', ack);
    if (err !== null) return `${name} is not in the contract, yet the server did not refuse it as unknown_event: ${err}`;
    return ack.error === 'unknown_event' ? null : `${name} is not in the contract but was acked ${ack.error}`;
  }
  const problems = [];
  for (const reply of spec.replies) {
    const err = errors(reply.key, ack);
    if (err === null) {
      record(reply.key);
      problems.length = 0;
      break;
    }
    problems.push(`${reply.key}: ${err}`);
  }
  if (problems.length) return `the ack of ${name} is outside the contract: ${problems.join(' | ')}`;
  if (ack.error === 'unknown_event') return `${name} is in the contract but the server does not handle it`;
  if (sent.sendError !== null) {
    if (ack.ok === false && SHAPE_ERRORS.includes(ack.error)) return null;
    return `${name} was sent outside the contract (${sent.sendError}) and the server did not refuse it as bad_request`;
  }
  if (ack.ok === false && ack.error === 'bad_request') {
    return `${name} conforms to the contract but the server refused it as bad_request`;
  }
  record(spec.message.key);
  return null;
}

module.exports = { check, checkEvent, checkRequest, checkAck, contract };

function coverage(dir) {
  const seenAll = new Set();
  for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (!f.endsWith('.jsonl')) continue;
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (line.trim()) seenAll.add(JSON.parse(line).message);
    }
  }
  let failed = false;
  for (const [key, m] of contract.messages) {
    const reason = NOT_COVERED[key];
    if (seenAll.has(key) && reason !== undefined) {
      console.log(`STALE   ${key} (${m.name}): seen, remove it from NOT_COVERED in tests/clients/contract.js`);
      failed = true;
    } else if (seenAll.has(key)) {
      console.log(`seen    ${key} (${m.name})`);
    } else if (reason !== undefined) {
      console.log(`exempt  ${key} (${m.name}): ${reason}`);
    } else {
      console.log(`MISSING ${key} (${m.name}): no e2e test produced it; add one or list it in NOT_COVERED`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

/// Problems of the document itself, one per line.
function lint(dir = CONTRACT_DIR) {
  const Ajv = require('ajv');
  const specs = require('@asyncapi/specs/schemas/3.0.0.json');
  // The official schema embeds its own copy of the draft-07 meta-schema.
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false, meta: false, validateSchema: false });
  const validate = ajv.compile(specs);
  const doc = JSON.parse(fs.readFileSync(path.join(dir, 'asyncapi.json'), 'utf8'));
  const problems = [];
  if (!validate(doc)) {
    // The schema's oneOf/if branches repeat each real error; keep the leaves.
    const leaves = validate.errors.filter((e) => !['oneOf', 'anyOf', 'if'].includes(e.keyword));
    problems.push(...leaves.map((e) => `not AsyncAPI 3.0.0: ${e.instancePath} ${e.message} (${e.schemaPath})`));
  }
  const files = new Set();
  const walk = (node) => {
    if (!node || typeof node !== 'object') return;
    if (typeof node.$ref === 'string') {
      if (node.$ref.startsWith('#/')) {
        try {
          deref(doc, { $ref: node.$ref });
        } catch (e) {
          problems.push(`unresolved reference ${node.$ref}`);
        }
      } else {
        files.add(node.$ref);
      }
    }
    Object.values(node).forEach(walk);
  };
  walk(doc);
  const schemaDir = path.join(dir, 'schemas');
  for (const f of fs.readdirSync(schemaDir).filter((f) => f.endsWith('.json'))) {
    if (f !== 'common.json' && !files.has('schemas/' + f) && !refersTo(schemaDir, f)) {
      problems.push(`schemas/${f} is used by no message`);
    }
  }
  for (const f of files) {
    if (!fs.existsSync(path.join(dir, f))) problems.push(`missing schema file ${f}`);
  }
  return problems;
}

/// Whether another schema file refers to `file` (e.g. ack.error.json from ack.request.json).
function refersTo(schemaDir, file) {
  return fs
    .readdirSync(schemaDir)
    .filter((f) => f !== file && f.endsWith('.json'))
    .some((f) => fs.readFileSync(path.join(schemaDir, f), 'utf8').includes(`"${file}`));
}

if (require.main === module) {
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === 'check' && arg) {
    const input = JSON.parse(fs.readFileSync(0, 'utf8'));
    const err = check(arg, input);
    if (err !== null) {
      console.error(`${arg}: ${err}\npayload: ${JSON.stringify(input)}`);
      process.exit(1);
    }
  } else if (cmd === 'coverage' && arg) {
    process.exit(coverage(arg));
  } else if (cmd === 'serve') {
    const rl = require('readline').createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      const q = JSON.parse(line);
      let reply;
      if (q.kind === 'event') reply = { error: checkEvent(q.name, q.data) };
      else if (q.kind === 'request') reply = { error: null, sent: checkRequest(q.name, q.data) };
      else if (q.kind === 'ack') reply = { error: checkAck(q.name, q.sent, q.data) };
      else if (q.kind === 'message') reply = { error: check(q.name, q.data) };
      else reply = { error: `contract.js serve: unknown kind ${q.kind}` };
      process.stdout.write(JSON.stringify(reply) + '\n');
    });
  } else if (cmd === 'lint') {
    const problems = lint();
    problems.forEach((p) => console.error(p));
    if (problems.length) process.exit(1);
    console.log('signaling/contract/asyncapi.json: a valid AsyncAPI 3.0.0 document, every reference resolves');
  } else {
    console.error('usage: node contract.js check MESSAGE < payload.json | coverage DIR | serve | lint');
    process.exit(2);
  }
}
