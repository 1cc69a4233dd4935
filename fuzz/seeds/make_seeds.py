#!/usr/bin/env python3
"""Writes the fuzz seed corpora: fuzz/seeds/<target>/<name>.bin.

Sources: the RFC 5769 / RFC 8489 vectors in ../shared/vectors/stun-test-vectors.md (each
"## title" followed by a hex line), plus a few TURN messages built here so the server target
starts from requests it would accept (Allocate, ChannelData). Run from anywhere:
    python3 fuzz/seeds/make_seeds.py [path/to/stun-test-vectors.md]
The output is committed; rerun only when the vectors change.
"""
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VECTORS = os.path.join(HERE, "..", "..", "..", "shared", "vectors", "stun-test-vectors.md")
COOKIE = 0x2112A442
TID = bytes(range(1, 13))


def vectors(path):
    title = None
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("## "):
            title = line[3:]
        elif title and re.fullmatch(r"[0-9a-fA-F]{40,}", line):
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower().split("(")[0]).strip("-")[:40].strip("-")
            yield slug, bytes.fromhex(line)
            title = None


def stun(msg_type, attrs):
    body = b""
    for kind, value in attrs:
        pad = (4 - len(value) % 4) % 4
        body += struct.pack("!HH", kind, len(value)) + value + b"\0" * pad
    return struct.pack("!HHI", msg_type, len(body), COOKIE) + TID + body


def turn_seeds():
    requested_udp = (0x0019, bytes([17, 0, 0, 0]))
    peer = (0x0012, struct.pack("!BBH", 0, 1, 0x4000 ^ (COOKIE >> 16)) + struct.pack("!I", 0x7F000001 ^ COOKIE))
    yield "binding-request", stun(0x0001, [])
    yield "allocate-unauthenticated", stun(0x0003, [requested_udp])
    yield "allocate-with-username", stun(0x0003, [requested_udp, (0x0006, b"1700000000:alice"),
                                                  (0x0014, b"e2e.test"), (0x0015, b"nonce-0123456789")])
    yield "refresh-zero-lifetime", stun(0x0004, [(0x000D, struct.pack("!I", 0))])
    yield "create-permission", stun(0x0008, [peer])
    yield "channel-bind", stun(0x0009, [(0x000C, struct.pack("!HH", 0x4000, 0)), peer])
    yield "send-indication", stun(0x0016, [peer, (0x0013, b"hello")])
    yield "channel-data", struct.pack("!HH", 0x4000, 5) + b"hello\0\0\0"
    yield "channel-data-short", struct.pack("!HH", 0x4FFF, 100) + b"x"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_VECTORS
    rfc = list(vectors(path))
    if len(rfc) < 5:
        sys.exit(f"expected at least 5 vectors in {path}, found {len(rfc)}")
    turn = list(turn_seeds())
    # Streams: several frames back to back, as over TCP/TLS (ChannelData padded to 4 bytes).
    frames = [data for _, data in rfc + turn if not data.endswith(b"x")]
    streams = [
        ("stream-all-frames", b"".join(frames)),
        ("stream-allocate-then-channel-data", dict(turn)["allocate-unauthenticated"] + dict(turn)["channel-data"]),
        ("stream-truncated", b"".join(frames)[:-7]),
    ]
    # PROXY protocol headers (v1 as nginx sends it, v2 TCP4 and TCP6 with a TLV, v2 LOCAL)
    # before the first frame, as on a listener behind a proxy.
    allocate = dict(turn)["allocate-unauthenticated"]
    v2sig = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])
    v6 = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack("!HH", 40000, 443) + b"\x01\x00\x09stun.turn"
    streams += [
        ("proxy-v1-tcp4", b"PROXY TCP4 127.0.0.2 127.0.0.1 40312 443\r\n" + allocate),
        ("proxy-v1-unknown", b"PROXY UNKNOWN\r\n" + allocate),
        ("proxy-v2-tcp4", v2sig + bytes([0x21, 0x11, 0, 12, 172, 19, 0, 1, 172, 19, 0, 3, 0xA6, 0x52, 0, 80]) + allocate),
        ("proxy-v2-tcp6-tlv", v2sig + bytes([0x21, 0x21]) + struct.pack("!H", len(v6)) + v6 + allocate),
        ("proxy-v2-local", v2sig + bytes([0x20, 0x00, 0, 0]) + allocate),
    ]
    corpora = {
        "stun_message": rfc + turn,
        "server_datagram": rfc + turn,
        "stream_framing": rfc + turn + streams,
    }
    for target, seeds in corpora.items():
        out = os.path.join(HERE, target)
        os.makedirs(out, exist_ok=True)
        for name, data in seeds:
            with open(os.path.join(out, name + ".bin"), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
