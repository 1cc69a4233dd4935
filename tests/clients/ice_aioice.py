#!/usr/bin/env python3
"""One ICE agent (aioice, PyPI), driven line by line by the e2e NAT traversal test.

The test runs two of these, each inside its own client namespace behind a symmetric NAT, and
relays the lines between them:

  1. gathers candidates (host, srflx from --stun, relay from --turn) and prints
     {"type": "local", "ufrag", "pwd", "candidates": [sdp...]}
  2. reads one line from stdin: the other agent's "local" object
  3. runs connectivity checks (bounded by --connect-timeout); on failure prints
     {"type": "result", "ok": false, "error"} and exits 1
  4. on success sends COUNT datagrams to the other agent (resent until it says "close") and waits
     for the other agent's COUNT, then prints {"type": "result", "ok": true, "local_type",
     "remote_type", "local", "remote", "received"}
  5. waits for "close" on stdin, closes the connection and exits 0.

    ice_aioice.py --role controlling|controlled [--stun H:P] [--turn H:P --username U --password P]
"""

import argparse
import asyncio
import json
import sys

import aioice
from aioice import Candidate, Connection


def host_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def emit(obj):
    print(json.dumps(obj), flush=True)


async def read_line(timeout):
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout)
    if not line:
        raise EOFError("stdin closed")
    return line


async def session(args):
    kwargs = {}
    if args.stun:
        kwargs["stun_server"] = host_port(args.stun)
    if args.turn:
        kwargs.update(
            turn_server=host_port(args.turn),
            turn_username=args.username,
            turn_password=args.password,
            turn_transport="udp",
        )
    conn = Connection(ice_controlling=args.role == "controlling", components=1, **kwargs)
    try:
        await asyncio.wait_for(conn.gather_candidates(), args.gather_timeout)
        emit(
            {
                "type": "local",
                "aioice": aioice.__version__,
                "ufrag": conn.local_username,
                "pwd": conn.local_password,
                "candidates": [c.to_sdp() for c in conn.local_candidates],
            }
        )
        remote = json.loads(await read_line(args.connect_timeout + 30))
        for sdp in remote["candidates"]:
            await conn.add_remote_candidate(Candidate.from_sdp(sdp))
        await conn.add_remote_candidate(None)
        conn.remote_username = remote["ufrag"]
        conn.remote_password = remote["pwd"]
        try:
            await asyncio.wait_for(conn.connect(), args.connect_timeout)
        except BaseException as exc:  # noqa: BLE001 - reported to the test as JSON
            emit({"type": "result", "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            return 1
        pair = conn._nominated[1]
        local, remote_c = pair.local_candidate, pair.remote_candidate

        stop = asyncio.Event()

        async def sender():
            while not stop.is_set():
                for i in range(args.count):
                    await conn.send(b"%s-%d" % (args.role.encode(), i))
                try:
                    await asyncio.wait_for(stop.wait(), 0.3)
                except asyncio.TimeoutError:
                    pass

        send_task = asyncio.create_task(sender())
        other = "controlled" if args.role == "controlling" else "controlling"
        want = {b"%s-%d" % (other.encode(), i) for i in range(args.count)}
        got = set()

        async def receive_all():
            while not want <= got:
                got.add(await conn.recv())

        error = None
        try:
            await asyncio.wait_for(receive_all(), args.data_timeout)
        except BaseException as exc:  # noqa: BLE001
            error = f"{type(exc).__name__}: {exc}"
        emit(
            {
                "type": "result",
                "ok": error is None,
                "error": error,
                "local_type": local.type,
                "remote_type": remote_c.type,
                "local": f"{local.host}:{local.port}",
                "remote": f"{remote_c.host}:{remote_c.port}",
                "received": sorted(x.decode(errors="replace") for x in (got & want)),
            }
        )
        try:
            await read_line(args.data_timeout + 10)
        except BaseException:  # noqa: BLE001 - close anyway
            pass
        stop.set()
        await send_task
        return 0 if error is None else 1
    finally:
        await conn.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["controlling", "controlled"], required=True)
    parser.add_argument("--stun")
    parser.add_argument("--turn")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--gather-timeout", type=float, default=15.0)
    parser.add_argument("--connect-timeout", type=float, default=20.0)
    parser.add_argument("--data-timeout", type=float, default=10.0)
    args = parser.parse_args()
    try:
        return await session(args)
    except BaseException as exc:  # noqa: BLE001 - reported to the test as JSON
        emit({"type": "result", "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
