"""Drives python-socketio (PyPI) for the e2e tests with the same stdin/stdout JSON-line protocol
as driver.js, so a Rust test can swap one client implementation for the other."""
import json
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


def connect(cmd):
    cid = cmd["id"]
    sio = socketio.Client(reconnection=bool(cmd.get("reconnection", False)))
    clients[cid] = sio

    @sio.event
    def connect():
        out({"id": cid, "type": "connect", "sid": sio.get_sid()})

    @sio.event
    def connect_error(data):
        message = data.get("message") if isinstance(data, dict) else str(data)
        out({"id": cid, "type": "connect_error", "message": message})

    @sio.event
    def disconnect(reason=None):
        out({"id": cid, "type": "disconnect", "reason": str(reason)})

    @sio.on("*")
    def any_event(event, data=None):
        out({"id": cid, "type": "event", "event": event, "data": data})

    auth = {"token": cmd["token"]} if "token" in cmd else None
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
    try:
        ack = sio.call(cmd["event"], cmd.get("data"), timeout=5)
    except socketio.exceptions.TimeoutError:
        ack = {"timeout": True}
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
