"""Drives python-socketio (PyPI) for the e2e tests with the same stdin/stdout JSON-line protocol
as driver.js, so a Rust test can swap one client implementation for the other. Like driver.js it
checks what it sends and receives against the signaling contract (signaling/contract/), through
the same validator (`node contract.js serve`), and reports a mismatch as a contract_violation line."""
import json
import os
import shutil
import subprocess
import sys
import threading

import socketio

MAX_LIFE_S = 180
lock = threading.Lock()
clients = {}


def out(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


checker_lock = threading.Lock()
checker = subprocess.Popen(
    [shutil.which("node") or "node", os.path.join(os.path.dirname(os.path.abspath(__file__)), "contract.js"), "serve"],
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
)


def contract(kind, name, data, sent=None):
    """One check by contract.js: {"error": null | text, "sent": ...}."""
    with checker_lock:
        checker.stdin.write(json.dumps({"kind": kind, "name": name, "data": data, "sent": sent}) + "\n")
        checker.stdin.flush()
        line = checker.stdout.readline()
    return json.loads(line) if line else {"error": "contract.js serve exited"}


def violation(cid, event, payload, error):
    sys.stderr.write(f"contract violation: {event} at {cid}: {error}\npayload: {json.dumps(payload)}\n")
    out({"id": cid, "type": "contract_violation", "event": event, "payload": payload, "error": error})


def connect(cmd):
    cid = cmd["id"]
    sio = socketio.Client(reconnection=bool(cmd.get("reconnection", False)))
    clients[cid] = sio

    @sio.event
    def connect():
        out({"id": cid, "type": "connect", "sid": sio.get_sid()})

    @sio.event
    def connect_error(data):
        if isinstance(data, dict):
            err = contract("message", "connectError", data)["error"]
            if err:
                violation(cid, "connectError", data, err)
        message = data.get("message") if isinstance(data, dict) else str(data)
        out({"id": cid, "type": "connect_error", "message": message})

    @sio.event
    def disconnect(reason=None):
        out({"id": cid, "type": "disconnect", "reason": str(reason)})

    @sio.on("*")
    def any_event(event, data=None):
        err = contract("event", event, data)["error"]
        if err:
            violation(cid, event, data, err)
        out({"id": cid, "type": "event", "event": event, "data": data})

    auth = {"token": cmd["token"]} if "token" in cmd else None
    if auth is not None:
        err = contract("message", "connectAuth", auth)["error"]
        if err:
            violation(cid, "connectAuth", auth, err)
    try:
        sio.connect(
            cmd["url"],
            socketio_path=cmd.get("path", "/socket.io").strip("/"),
            transports=cmd.get("transports", ["websocket"]),
            auth=auth,
            headers=cmd.get("headers") or {},
            wait_timeout=5,
        )
    except socketio.exceptions.ConnectionError as e:
        out({"id": cid, "type": "connect_error", "message": str(e)})


def emit(cmd):
    sio = clients.get(cmd["id"])
    if sio is None:
        out({"id": cmd["id"], "type": "driver_error", "message": "no such client"})
        return
    sent = contract("request", cmd["event"], cmd.get("data"))["sent"]
    try:
        ack = sio.call(cmd["event"], cmd.get("data"), timeout=5)
        err = contract("ack", cmd["event"], ack, sent)["error"]
    except socketio.exceptions.TimeoutError:
        ack = {"timeout": True}
        err = sent and sent.get("sendError") and f"{cmd['event']} was sent outside the contract and not acked"
    if err:
        violation(cmd["id"], cmd["event"], {"sent": cmd.get("data"), "ack": ack}, err)
    out({"id": cmd["id"], "type": "ack", "req": cmd.get("req"), "data": ack})


def main():
    threading.Timer(MAX_LIFE_S, lambda: __import__("os")._exit(3)).start()
    for line in sys.stdin:
        try:
            cmd = json.loads(line)
        except ValueError:
            out({"type": "driver_error", "message": "bad command: " + line})
            continue
        op = cmd.get("op")
        if op == "connect":
            threading.Thread(target=connect, args=(cmd,), daemon=True).start()
        elif op == "emit":
            threading.Thread(target=emit, args=(cmd,), daemon=True).start()
        elif op == "disconnect" and cmd["id"] in clients:
            clients[cmd["id"]].disconnect()
        elif op == "exit":
            break
    __import__("os")._exit(0)


if __name__ == "__main__":
    main()
