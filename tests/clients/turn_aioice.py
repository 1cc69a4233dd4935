#!/usr/bin/env python3
"""TURN over TCP or TLS with aioice (PyPI), a client nobody here wrote, driven by the e2e tests.

Allocates on the relay with long-term credentials (aioice does the 401 nonce dance), creates a
permission for the echo peer's IP, sends COUNT datagrams to the UDP echo peer (aioice binds a
channel on the first send and uses ChannelData), waits for every echo, then sends one Send
indication to a second port of the peer and waits for its echo as a Data indication, and finally
deletes the allocation. Prints one JSON line and exits 0 on success, 1 on failure. Everything is
bounded by --timeout.

    turn_aioice.py --server 127.0.0.1:3478 --transport tcp --username U --password P \
        --peer 127.0.0.1:4000 --peer2 127.0.0.1:4001 [--cafile cert.pem] [--server-hostname NAME]
"""

import argparse
import asyncio
import json
import ssl
import sys

import aioice
from aioice import stun, turn


def host_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Receiver(asyncio.DatagramProtocol):
    """The application side of the TURN transport: queues what the relay delivers."""

    def __init__(self):
        self.queue = asyncio.Queue()
        self.lost = asyncio.get_running_loop().create_future()
        self.errors = []

    def datagram_received(self, data, addr):
        self.queue.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.append(repr(exc))

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def wait_for_datagram(receiver, want, timeout):
    """The next datagram whose payload is `want`, as (payload, addr)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(f"no echo of {want!r} within {timeout}s")
        data, addr = await asyncio.wait_for(receiver.queue.get(), left)
        if data == want:
            return data, addr


async def open_endpoint(args, ssl_ctx):
    server = host_port(args.server)
    if args.server_hostname is None:
        # The library's public entry point, as an application would call it.
        return await turn.create_turn_endpoint(
            Receiver,
            server_addr=server,
            username=args.username,
            password=args.password,
            ssl=ssl_ctx,
            transport="tcp",
        )
    # create_turn_endpoint has no server_hostname: SNI needs the connection made here, the same
    # way it makes it, with the name the TLS client must present (behind nginx's ssl_preread).
    loop = asyncio.get_running_loop()
    inner_transport, inner = await loop.create_connection(
        lambda: turn.TurnClientTcpProtocol(
            server,
            username=args.username,
            password=args.password,
            lifetime=turn.DEFAULT_ALLOCATION_LIFETIME,
            channel_refresh_time=turn.DEFAULT_CHANNEL_REFRESH_TIME,
        ),
        host=server[0],
        port=server[1],
        ssl=ssl_ctx,
        server_hostname=args.server_hostname,
    )
    try:
        receiver = Receiver()
        transport = turn.TurnTransport(inner)
        await transport._connect(receiver)
    except BaseException:
        inner_transport.close()
        raise
    return transport, receiver


async def session(args, result):
    ssl_ctx = None
    if args.transport == "tls":
        ssl_ctx = ssl.create_default_context(cafile=args.cafile)
        if args.alpn:
            ssl_ctx.set_alpn_protocols([args.alpn])
    transport, receiver = await open_endpoint(args, ssl_ctx)
    inner = transport._TurnTransport__inner_protocol
    tls = inner.transport.get_extra_info("ssl_object")
    if tls is not None:
        result["tls_version"] = tls.version()
        cert = tls.getpeercert()
        result["tls_peer_subject"] = dict(x[0] for x in cert.get("subject", ()))
    result["relayed"] = "%s:%d" % transport.get_extra_info("sockname")
    result["mapped"] = "%s:%d" % transport.get_extra_info("related_address")

    peer, peer2 = host_port(args.peer), host_port(args.peer2)

    # An explicit CreatePermission for the peer's IP (RFC 8656 section 9).
    request = stun.Message(message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST)
    request.attributes["XOR-PEER-ADDRESS"] = peer
    response, _ = await inner.request_with_retry(request)
    result["permission"] = response.message_class.name

    # COUNT datagrams over a channel (bound by aioice on the first send), every echo awaited.
    echoes = 0
    for i in range(args.count):
        payload = b"aioice-%s-%04d-" % (args.transport.encode(), i) + bytes(range(i % 200))
        transport.sendto(payload, peer)
        _, addr = await wait_for_datagram(receiver, payload, args.echo_timeout)
        if addr != peer:
            raise RuntimeError(f"echo of datagram {i} came from {addr}, not {peer}")
        echoes += 1
    result["channel_echoes"] = echoes
    result["channels"] = len(inner.channel_to_peer)

    # One Send indication to the peer's second port; its echo comes back as a Data indication
    # (no channel is bound to that port), which aioice accepts for a peer IP it has a channel to.
    payload = b"aioice-send-indication-%s" % args.transport.encode()
    indication = stun.Message(message_method=stun.Method.SEND, message_class=stun.Class.INDICATION)
    indication.attributes["XOR-PEER-ADDRESS"] = peer2
    indication.attributes["DATA"] = payload
    inner.send_stun(indication, inner.server)
    _, addr = await wait_for_datagram(receiver, payload, args.echo_timeout)
    if addr != peer2:
        raise RuntimeError(f"echo of the Send indication came from {addr}, not {peer2}")
    result["indication_echo"] = True

    # Delete the allocation (Refresh with LIFETIME 0); the transport then closes.
    transport.close()
    await asyncio.wait_for(receiver.lost, args.echo_timeout)
    result["deleted"] = True
    if receiver.errors:
        raise RuntimeError(f"send errors: {receiver.errors}")


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--transport", choices=["tcp", "tls"], required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--peer2", required=True)
    parser.add_argument("--cafile")
    parser.add_argument("--server-hostname")
    parser.add_argument("--alpn")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--echo-timeout", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    result = {"ok": False, "transport": args.transport, "aioice": aioice.__version__}
    try:
        await asyncio.wait_for(session(args, result), args.timeout)
        result["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - reported to the test as JSON
        result["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
