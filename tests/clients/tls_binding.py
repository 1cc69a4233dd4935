"""STUN Binding over TLS from chosen source addresses, for the PROXY protocol tests.

Opens one TLS connection per --source, in order, keeping every one open until all are done (so a
per-source connection cap sees them all at once), sends a Binding request on each and reports the
XOR-MAPPED-ADDRESS the relay answers, or why the connection failed. --proxy-header writes that
line (plus CRLF) before the TLS handshake, as a proxy would. Prints one JSON list.

Standard library only: it must not depend on the client library under test.
"""

import argparse
import json
import os
import socket
import ssl
import struct

MAGIC = 0x2112A442


def binding_request(tid):
    return struct.pack("!HHI", 0x0001, 0, MAGIC) + tid


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def xor_mapped(message):
    body = message[20:]
    while len(body) >= 4:
        kind, length = struct.unpack("!HH", body[:4])
        value = body[4 : 4 + length]
        if kind == 0x0020 and length == 8 and value[1] == 1:
            port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC >> 16)
            ip = struct.unpack("!I", value[4:8])[0] ^ MAGIC
            return f"{socket.inet_ntoa(struct.pack('!I', ip))}:{port}"
        body = body[4 + ((length + 3) & ~3) :]
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True, help="host:port")
    p.add_argument("--server-hostname", required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--source", action="append", required=True, help="local IPv4 address to connect from")
    p.add_argument("--proxy-header", help="a PROXY protocol v1 line to send first (without CRLF)")
    args = p.parse_args()
    host, port = args.server.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=args.cafile)
    held, results = [], []
    for source in args.source:
        result = {"source": source}
        try:
            raw = socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))
            held.append(raw)
            result["source"] = "%s:%d" % raw.getsockname()
            if args.proxy_header:
                raw.sendall(args.proxy_header.encode() + b"\r\n")
            tls = ctx.wrap_socket(raw, server_hostname=args.server_hostname)
            held.append(tls)
            tid = os.urandom(12)
            tls.sendall(binding_request(tid))
            header = read_exact(tls, 20)
            message = header + read_exact(tls, struct.unpack("!H", header[2:4])[0])
            if message[8:20] != tid:
                raise ValueError("answer to another transaction")
            result["mapped"] = xor_mapped(message)
        except (OSError, ValueError) as e:
            result["error"] = f"{type(e).__name__}: {e}"
        results.append(result)
    print(json.dumps(results))
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
