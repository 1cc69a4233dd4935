// SPDX-License-Identifier: MIT OR Apache-2.0 OR GPL-2.0
//
// What the TC program (relay.bpf.c) and the XDP program (relay_xdp.bpf.c) share: the layouts of
// the maps the relay process fills (src/offload/maps.rs mirrors them byte for byte), the maps
// themselves, and the helpers both use (addresses, checksums, counters). Each program is its own
// object, so each has its own instance of these maps; one relay process loads one of them.

#ifndef RELAY_MAPS_H
#define RELAY_MAPS_H

#include <linux/bpf.h>
#include <linux/in.h>
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

// bpf_fib_lookup's parameters, per CPU: off the stack, of which a program's call chain may use
// 512 bytes in all.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_fib_lookup);
} fib_params SEC(".maps");

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

// The unfolded sum of the UDP pseudo header.
static __always_inline __s64 pseudo_sum(const __u8 src[16], const __u8 dst[16], __u32 udp_len,
					__u8 v6)
{
	struct {
		__be32 len;
		__be32 proto;
	} tail = { bpf_htonl(udp_len), bpf_htonl(IPPROTO_UDP) };
	__s64 s;
	if (v6) {
		s = bpf_csum_diff(0, 0, (__be32 *)src, 16, 0);
		if (s < 0)
			return s;
		s = bpf_csum_diff(0, 0, (__be32 *)dst, 16, (__u32)s);
	} else {
		s = bpf_csum_diff(0, 0, (__be32 *)(src + 12), 4, 0);
		if (s < 0)
			return s;
		s = bpf_csum_diff(0, 0, (__be32 *)(dst + 12), 4, (__u32)s);
	}
	if (s < 0)
		return s;
	return bpf_csum_diff(0, 0, (__be32 *)&tail, sizeof(tail), (__u32)s);
}

// The route of ChannelData on `channel` from a client at src:sport to the server at dst:dport.
static __always_inline struct channel_value *find_channel(const __u8 src[16], const __u8 dst[16],
							  __be16 sport, __be16 dport, __be16 channel)
{
	struct channel_key key = {};
	__builtin_memcpy(key.client_ip, src, 16);
	__builtin_memcpy(key.server_ip, dst, 16);
	key.client_port = sport;
	key.server_port = dport;
	key.channel = channel;
	return bpf_map_lookup_elem(&channels, &key);
}

// The route back of a peer's datagram from src:sport to the relayed address dst:dport.
static __always_inline struct peer_value *find_peer(const __u8 src[16], const __u8 dst[16],
						    __be16 sport, __be16 dport)
{
	struct peer_key key = {};
	__builtin_memcpy(key.peer_ip, src, 16);
	__builtin_memcpy(key.relay_ip, dst, 16);
	key.peer_port = sport;
	key.relay_port = dport;
	return bpf_map_lookup_elem(&peers, &key);
}

// The `peers` entry a route's datagrams to its peer would match if that peer were a relayed
// address of this relay (relay to relay).
static __always_inline struct peer_value *back_route(const struct channel_value *v)
{
	return find_peer(v->relay_ip, v->peer_ip, v->relay_port, v->peer_port);
}

// Whether a UDP payload of `payload_len` bytes is exactly one ChannelData message whose header
// says `channel` and `length` (RFC 8656 section 12.4: numbers 0x4000-0x4FFF; a padded message,
// or anything else, goes to userspace).
static __always_inline int is_channel_data(__u16 channel, __u32 length, __u32 payload_len)
{
	return channel >= 0x4000 && channel <= 0x4fff && payload_len == 4 + length;
}

// Counts one relayed datagram of `bytes` payload on the route's slot.
static __always_inline void count(__u32 slot, int to_peer, __u64 bytes)
{
	struct counters *c = bpf_map_lookup_elem(&counters, &slot);
	if (!c)
		return;
	// Per-CPU: no other CPU writes this copy, plain adds are enough.
	if (to_peer) {
		c->to_peer_packets += 1;
		c->to_peer_bytes += bytes;
	} else {
		c->from_peer_packets += 1;
		c->from_peer_bytes += bytes;
	}
}

// A computed UDP checksum as the check field carries it: 0 there means "no checksum", so a sum
// that folds to 0 is sent as 0xffff (RFC 768).
static __always_inline __u16 udp_check_field(__u64 sum)
{
	__u16 check = ~fold(sum) & 0xffff;
	return check ? check : 0xffff;
}

// Sums `udp_len` bytes of a packet from `l4` onto `sum` (the last partial word padded with
// zeros, as RFC 768 says), through `load` (bpf_skb_load_bytes or bpf_xdp_load_bytes): one body for
// both programs, which differ only in their context and load helper. -1 when a load fails.
#define DEFINE_SUM_DATAGRAM(name, ctx_type, load)                                                  \
	static __always_inline __s64 name(ctx_type *ctx, __u32 l4, __u32 udp_len, __u32 sum)     \
	{                                                                                           \
		__u32 key = 0;                                                                      \
		struct scratch *buf = bpf_map_lookup_elem(&scratch, &key);                          \
		if (!buf)                                                                           \
			return -1;                                                                  \
		__s64 s;                                                                            \
		for (__u32 i = 0; i < MAX_CHUNKS; i++) {                                            \
			__u32 off = i * CHUNK;                                                      \
			if (off >= udp_len)                                                         \
				break;                                                              \
			__u32 rem = udp_len - off;                                                  \
			if (rem >= CHUNK) {                                                         \
				if (load(ctx, l4 + off, buf->words, CHUNK) < 0)                     \
					return -1;                                                  \
				s = bpf_csum_diff(0, 0, buf->words, CHUNK, sum);                    \
			} else {                                                                    \
				/* The asm keeps clang from bounds-checking one copy and using   */ \
				/* another.                                                       */ \
				asm volatile("" : "+r"(rem));                                       \
				rem &= CHUNK - 1;                                                   \
				if (rem == 0)                                                       \
					break;                                                      \
				__u32 idx = rem >> 2;                                               \
				asm volatile("" : "+r"(idx));                                       \
				idx &= CHUNK / 4 - 1;                                               \
				buf->words[idx] = 0;                                                \
				if (load(ctx, l4 + off, buf->words, rem) < 0)                       \
					return -1;                                                  \
				/* rem rounded up to whole words, in [4, CHUNK]. */                 \
				__u32 size = rem - 1;                                               \
				asm volatile("" : "+r"(size));                                      \
				size = (size & (CHUNK - 4)) + 4;                                    \
				s = bpf_csum_diff(0, 0, buf->words, size, sum);                     \
			}                                                                           \
			if (s < 0)                                                                  \
				return -1;                                                          \
			sum = (__u32)s;                                                             \
		}                                                                                   \
		return sum;                                                                         \
	}

// Defines `name(ctx, l4, src, dst, udp_len, v6)`, which writes a full UDP checksum over the
// datagram whose UDP header is at `l4`: the pseudo header, then the datagram, summed through
// `load`, with the check field zeroed and then written through `store` (both programs' helpers
// take (ctx, offset, buffer, length)). The sum loop is defined as `name##_datagram`.
#define DEFINE_FULL_CHECKSUM(name, ctx_type, load, store)                                          \
	DEFINE_SUM_DATAGRAM(name##_datagram, ctx_type, load)                                        \
	static __always_inline int name(ctx_type *ctx, __u32 l4, const __u8 src[16],               \
					const __u8 dst[16], __u32 udp_len, __u8 v6)                  \
	{                                                                                           \
		__s64 s = pseudo_sum(src, dst, udp_len, v6);                                        \
		if (s < 0)                                                                          \
			return -1;                                                                  \
		__u16 zero = 0;                                                                     \
		if (store(ctx, l4 + 6, &zero, 2) < 0)                                               \
			return -1;                                                                  \
		s = name##_datagram(ctx, l4, udp_len, (__u32)s);                                    \
		if (s < 0)                                                                          \
			return -1;                                                                  \
		__u16 check = udp_check_field((__u64)s);                                            \
		return (int)store(ctx, l4 + 6, &check, 2);                                          \
	}

#endif // RELAY_MAPS_H
