"""STUN Binding over TLS from chosen source addresses, for the PROXY protocol tests.

Opens one TLS connection per --source, in order, keeping every one open until all are done (so a
per-source connection cap sees them all at once), sends a Binding request on each and reports the
XOR-MAPPED-ADDRESS the relay answers, or why the connection failed. --proxy-header writes that
line (plus CRLF) before the TLS handshake, as a proxy would. --allocate USER:PASS then asks each
connection for a UDP allocation with long-term credentials (RFC 8489 section 9.2, MD5 key and
HMAC-SHA1 MESSAGE-INTEGRITY) and reports "ok" or the error code. Prints one JSON list.

Standard library only: it must not depend on the client library under test.
"""

import argparse
import hashlib
import hmac
import json
import os
import socket
import ssl
import struct

MAGIC = 0x2112A442


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


def attr(kind, value):
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def attributes(message):
    out, body = {}, message[20:]
    while len(body) >= 4:
        kind, length = struct.unpack("!HH", body[:4])
        out.setdefault(kind, body[4 : 4 + length])
        body = body[4 + ((length + 3) & ~3) :]
    return out


def transact(sock, method, attrs, key=None):
    tid = os.urandom(12)
    body = b"".join(attrs)
    if key is not None:
        # MESSAGE-INTEGRITY covers the header with a length that already counts it.
        head = struct.pack("!HHI", method, len(body) + 24, MAGIC) + tid
        body += attr(0x0008, hmac.new(key, head + body, hashlib.sha1).digest())
    sock.sendall(struct.pack("!HHI", method, len(body), MAGIC) + tid + body)
    header = read_exact(sock, 20)
    message = header + read_exact(sock, struct.unpack("!H", header[2:4])[0])
    if message[8:20] != tid:
        raise ValueError("answer to another transaction")
    return message


def allocate(sock, user, password):
    transport = attr(0x0019, bytes([17, 0, 0, 0]))
    challenge = attributes(transact(sock, 0x0003, [transport]))
    realm, nonce = challenge[0x0014], challenge[0x0015]
    key = hashlib.md5(f"{user}:{realm.decode()}:{password}".encode()).digest()
    signed = [transport, attr(0x0006, user.encode()), attr(0x0014, realm), attr(0x0015, nonce)]
    answer = transact(sock, 0x0003, signed, key)
    if struct.unpack("!H", answer[:2])[0] == 0x0103:
        return "ok"
    code = attributes(answer).get(0x0009, b"\0\0\0\0")
    return (code[2] & 7) * 100 + code[3]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True, help="host:port")
    p.add_argument("--server-hostname", required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--source", action="append", required=True, help="local IPv4 address to connect from")
    p.add_argument("--proxy-header", help="a PROXY protocol v1 line to send first (without CRLF)")
    p.add_argument("--allocate", metavar="USER:PASS", help="also allocate on each connection")
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
            result["mapped"] = xor_mapped(transact(tls, 0x0001, []))
            if args.allocate:
                user, password = args.allocate.rsplit(":", 1)
                result["allocate"] = allocate(tls, user, password)
        except (OSError, ValueError) as e:
            result["error"] = f"{type(e).__name__}: {e}"
        results.append(result)
    print(json.dumps(results))
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
