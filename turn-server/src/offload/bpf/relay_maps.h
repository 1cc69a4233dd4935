// SPDX-License-Identifier: MIT OR Apache-2.0 OR GPL-2.0
//
// What the TC program (relay.bpf.c) and the XDP program (relay_xdp.bpf.c) share: the layouts of
// the maps the relay process fills (src/offload/maps.rs mirrors them byte for byte), the maps
// themselves, and small pure helpers. Each program is its own object, so each has its own
// instance of these maps; one relay process loads one of them.

#ifndef RELAY_MAPS_H
#define RELAY_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_ENTRIES 65536
#define CHUNK 512
// Enough chunks for the largest UDP datagram (65535 bytes).
#define MAX_CHUNKS 129

// Keys and values: addresses are 16 bytes (IPv4 as ::ffff:a.b.c.d), ports and the channel in
// network order. Padding is explicit so the Rust mirror (maps.rs) has the same bytes.
struct channel_key {
	__u8 client_ip[16];
	__u8 server_ip[16];
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u16 pad;
};

// `egress`: where the rewritten datagram goes when the FIB cannot say (forwarding off on the
// ingress device, as on most hosts that are not routers): EGRESS_LOCAL for an address of this
// host, an ifindex otherwise, 0 for "unknown" (userspace relays it). The relay looks it up when
// it installs the route (offload/egress.rs).
#define EGRESS_LOCAL 0xffffffffu

struct channel_value {
	__u8 relay_ip[16];
	__u8 peer_ip[16];
	__be16 relay_port;
	__be16 peer_port;
	__u32 slot;
	__u32 egress;
	__u32 pad;
};

struct peer_key {
	__u8 peer_ip[16];
	__u8 relay_ip[16];
	__be16 peer_port;
	__be16 relay_port;
	__u32 pad;
};

struct peer_value {
	__u8 client_ip[16];
	__u8 server_ip[16];
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u16 pad;
	__u32 slot;
	__u32 egress;
};

struct counters {
	__u64 to_peer_packets;
	__u64 to_peer_bytes;
	__u64 from_peer_packets;
	__u64 from_peer_bytes;
};

struct scratch {
	__u32 words[CHUNK / 4];
};

// Values are read in place. An entry the relay removes while another CPU is reading it may be
// reused for another route at once (hash maps recycle elements without waiting), so a datagram
// in flight at that instant could read a mix; the relay removes a route only when its traffic
// stops being allowed, and installs at ChannelBind, so the window is a few instructions wide
// and needs a removal and an install on another CPU within it.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct channel_key);
	__type(value, struct channel_value);
} channels SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct peer_key);
	__type(value, struct peer_value);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

// A per-CPU buffer for summing a PARTIAL datagram (the BPF stack is only 512 bytes).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

static __always_inline void map_v4(__u8 out[16], __be32 a)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &a, 4);
}

static __always_inline int is_mapped_v4(const __u8 a[16])
{
	__u64 lo;
	__u32 mid;
	__builtin_memcpy(&lo, a, 8);
	__builtin_memcpy(&mid, a + 8, 4);
	return lo == 0 && mid == bpf_htonl(0x0000ffff);
}

static __always_inline __u32 fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u32)sum;
}

#endif // RELAY_MAPS_H
