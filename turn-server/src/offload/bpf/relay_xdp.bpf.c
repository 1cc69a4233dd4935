// SPDX-License-Identifier: MIT OR Apache-2.0 OR GPL-2.0
//
// The kernel fast path at XDP (`--offload xdp`): the same relaying as the TC program
// (relay.bpf.c), run by the driver before the kernel allocates an skb (native mode), or on the
// skb right after it (generic mode, for devices without XDP support such as lo). Same maps, same
// rules: ChannelData on a bound channel from a client becomes UDP {relay -> peer} carrying its
// payload; UDP {peer -> relay} becomes ChannelData {server -> client}; client, server, relay and
// peer of one family; eth + IPv4 (no options, no fragments) / IPv6 (no extension headers) + UDP;
// anything else is XDP_PASS, untouched, to the stack and the userspace relay.
//
// ## The frame
// The 4-byte ChannelData header sits right after the UDP header, so eth + IP + UDP headers move
// instead of the payload: client -> peer copies them out, bpf_xdp_adjust_head(+4) drops the
// first 4 bytes, and the rewritten headers go back over the old headers' tail and the ChannelData
// header; peer -> client does the reverse with adjust_head(-4) and writes the ChannelData header
// where the old UDP header's second half was. Everything is read and written through
// bpf_xdp_load_bytes/bpf_xdp_store_bytes at offsets the parser found, as the TC program does.
//
// ## Delivery
// bpf_fib_lookup on the rewritten addresses, before anything changes (without SKIP_NEIGH: XDP
// has no bpf_redirect_neigh, so the lookup must supply the MACs):
// - SUCCESS (forwarding on): smac/dmac and the egress device come from the FIB and its
//   neighbour entry. NO_NEIGH (not resolved yet), FRAG_NEEDED, unreachable and the rest ->
//   userspace, unchanged; the stack resolves the neighbour when userspace sends.
// - FWD_DISABLED (forwarding off on the ingress device, most hosts; BPF_FIB_LOOKUP_OUTPUT does
//   not help, net/core/filter.c checks forwarding before it looks at the flags): the egress the
//   relay looked up at install (`egress` in the route's value, as for TC) and the next hop the
//   relay resolved for the destination in `next_hops` (its MAC from the neighbour table, the
//   egress device's MAC and MTU; src/offload/next_hop.rs, refreshed every second). No entry (not
//   resolved yet, or gone) -> userspace, unchanged.
// - NOT_FWDED / EGRESS_LOCAL (a destination on this host) -> XDP_PASS after the rewrite, the
//   stack delivers it; only for frames that came in on lo: a rewritten IPv4 datagram carries
//   this host's address as its source, which the stack drops as a martian on any other device.
//   A peer that is another allocation's relayed address is not delivered but relayed on to that
//   allocation's client at once (hairpin()).
// Out the ingress device -> XDP_TX; another device -> bpf_redirect. In generic mode the kernel
// sends the redirected skb through any device. In native mode the frame goes to the egress
// driver's ndo_xdp_xmit, and a device without one (a veth whose other end has neither XDP nor
// GRO on; a driver without XDP) drops it after the program counted it: so a frame leaves a
// native ingress only for a device the relay marked in `ports` as running this program natively
// and taking XDP frames (the kernel's NETDEV_XDP_ACT_NDO_XMIT, re-read every second,
// src/offload/next_hop.rs); else it goes to userspace, unchanged.
//
// ## Checksums
// Native XDP sees what the wire carried: a full UDP checksum (or an IPv4 0, "none", which stays
// 0). Both checksums are updated incrementally by hand (bpf_csum_diff over the old and new
// words: addresses, ports, lengths, the ChannelData word), so a datagram that arrived corrupt
// stays detectably corrupt. Where the program runs on an skb a local socket sent (generic XDP
// on lo or a veth; native XDP on a veth runs on its peer's skb too), the skb is often
// CHECKSUM_PARTIAL: its check field holds only the folded pseudo-header sum, and this program
// cannot see ip_summed. The kernel does not follow an adjust_head with csum_start either
// (bpf_prog_run_generic_xdp moves data, mac_header and network_header only; veth_xdp_rcv_skb
// likewise), so csum_start points 4 bytes before the new UDP header after a pop and 4 bytes into
// it after a push: a device filling the checksum in would write it into the wrong bytes, and a
// local receiver verifies the field in full after a pop. So: a check field equal to the folded
// pseudo-header sum of the original datagram is taken as PARTIAL (a real checksum equals it by
// a 1 in 65535 chance, and then the full checksum written is still right), the rewritten
// datagram gets a full checksum computed here (right however the receiver looks at it), and it
// is relayed only to a local destination; one that would leave through a device goes to
// userspace. Nobody updates skb->csum of a CHECKSUM_COMPLETE skb (generic XDP on a NIC that
// reports it) either; no local delivery comes from a NIC (see Delivery), and a device sending
// the frame out ignores skb->csum, but a veth hands the skb on as it is: a receiver behind it
// finds the sum wrong, verifies in software (our checksum passes) and logs "hw csum failure".
// A GSO skb (a local sender's UDP_SEGMENT) looks like one large datagram here (XDP cannot see
// gso_segs, which the TC program checks); a sender on this host that uses it towards a relayed
// channel gets what it sent relayed as one datagram, to a local destination only (GSO skbs are
// PARTIAL).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "relay_maps.h"

#define ETH_LEN 14
#define IP4_LEN 20
#define IP6_LEN 40
#define UDP_LEN 8
#define CD_LEN 4
#define RELAY_TTL 64
#define AF_INET 2
#define AF_INET6 10
// Ethernet + IP + UDP headers: what moves when the ChannelData header goes or comes.
#define HDR4 (ETH_LEN + IP4_LEN + UDP_LEN)
#define HDR6 (ETH_LEN + IP6_LEN + UDP_LEN)
// The loopback device's index in every network namespace.
#define LOOPBACK_IFINDEX 1
// Not a packet this program relays: the caller tries the other direction, then passes it.
#define NOT_MINE -1

// `next_hops` key: a destination (client or peer) in the 16-byte form.
struct next_hop_key {
	__u8 ip[16];
};

// `next_hops` value: how a frame for that destination leaves when the FIB will not say.
struct next_hop {
	__u8 dmac[6]; // the next hop's (the destination's, or its gateway's) MAC
	__u8 smac[6]; // the egress device's MAC
	__u32 ifindex; // the egress device; must equal the route's `egress`
	__u32 mtu; // the egress device's MTU: a larger IP packet goes to userspace
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct next_hop_key);
	__type(value, struct next_hop);
} next_hops SEC(".maps");

// `ports` flags, by interface index, for the devices this program is attached to.
#define PORT_GENERIC 1 // it runs in generic mode there: a redirect sends the skb, any device
#define PORT_XMIT 2 // it runs natively there and the device takes XDP frames

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} ports SEC(".maps");

// What the parser found.
struct pkt {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__be16 check; // the UDP check field as on the wire
	__u8 v6;
	__u8 pad;
	__u32 udp_len; // host order, the UDP length field (header included)
	__u32 len; // the frame's length
};

// The words a rewrite changes in the UDP checksum's sum, old and new alike: pseudo-header
// addresses and length, ports, the UDP length, and the ChannelData header's word (0 where there
// is none). IPv4 addresses are in the mapped form: the ::ffff prefix is in both and cancels.
struct csum_words {
	__u8 src[16];
	__u8 dst[16];
	__be32 pseudo_len;
	__be16 sport;
	__be16 dport;
	__be16 udp_len;
	__u16 zero;
	__u32 cd;
};

// Where the rewritten frame goes.
struct out {
	__u8 dmac[6];
	__u8 smac[6];
	__u32 ifindex; // 0: deliver locally (XDP_PASS)
};

static __always_inline __u32 frame_len(struct xdp_md *ctx)
{
	return (__u32)bpf_xdp_get_buff_len(ctx);
}

// Parses eth + IPv4/IPv6 + UDP without options, fragments or extension headers.
static __always_inline int parse(struct xdp_md *ctx, struct pkt *p)
{
	struct ethhdr eth;
	p->len = frame_len(ctx);
	if (bpf_xdp_load_bytes(ctx, 0, &eth, sizeof(eth)) < 0)
		return -1;
	__u32 l4;
	if (eth.h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_xdp_load_bytes(ctx, ETH_LEN, &ip, sizeof(ip)) < 0)
			return -1;
		if (ip.version != 4 || ip.ihl != 5 || ip.protocol != IPPROTO_UDP)
			return -1;
		// MF set or a fragment offset: not a whole datagram.
		if (ip.frag_off & bpf_htons(0x3fff))
			return -1;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (tot < IP4_LEN + UDP_LEN || ETH_LEN + tot != p->len)
			return -1;
		map_v4(p->src, ip.saddr);
		map_v4(p->dst, ip.daddr);
		p->v6 = 0;
		p->udp_len = tot - IP4_LEN;
		l4 = ETH_LEN + IP4_LEN;
	} else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_xdp_load_bytes(ctx, ETH_LEN, &ip6, sizeof(ip6)) < 0)
			return -1;
		if (ip6.version != 6 || ip6.nexthdr != IPPROTO_UDP)
			return -1;
		__u32 plen = bpf_ntohs(ip6.payload_len);
		if (plen < UDP_LEN || ETH_LEN + IP6_LEN + plen != p->len)
			return -1;
		__builtin_memcpy(p->src, &ip6.saddr, 16);
		__builtin_memcpy(p->dst, &ip6.daddr, 16);
		p->v6 = 1;
		p->udp_len = plen;
		l4 = ETH_LEN + IP6_LEN;
	} else {
		return -1;
	}
	struct udphdr udp;
	if (bpf_xdp_load_bytes(ctx, l4, &udp, sizeof(udp)) < 0)
		return -1;
	if (bpf_ntohs(udp.len) != p->udp_len)
		return -1;
	p->sport = udp.source;
	p->dport = udp.dest;
	p->check = udp.check;
	return 0;
}

// Whether a frame that came in on this device may leave through `out` (see Delivery above).
static __always_inline int can_send(struct xdp_md *ctx, __u32 out)
{
	__u32 in = ctx->ingress_ifindex;
	__u32 *flags = bpf_map_lookup_elem(&ports, &in);
	if (flags && (*flags & PORT_GENERIC))
		return 1;
	flags = bpf_map_lookup_elem(&ports, &out);
	return flags && (*flags & PORT_XMIT);
}

static __always_inline int local(struct xdp_md *ctx, struct out *o)
{
	if (ctx->ingress_ifindex != LOOPBACK_IFINDEX)
		return -1;
	o->ifindex = 0;
	return 0;
}

// Where the rewritten frame goes (see Delivery at the top): 0 with `o` filled, < 0 userspace.
static __always_inline int route(struct xdp_md *ctx, const struct pkt *p, const __u8 src[16],
				 const __u8 dst[16], __be16 sport, __be16 dport, __u32 new_udp_len,
				 __u32 egress, struct out *o)
{
	__u32 zero = 0;
	struct bpf_fib_lookup *fibp = bpf_map_lookup_elem(&fib_params, &zero);
	if (!fibp)
		return -1;
	__builtin_memset(fibp, 0, sizeof(*fibp));
#define fib (*fibp)
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = sport;
	fib.dport = dport;
	fib.ifindex = ctx->ingress_ifindex;
	__u32 ip_len;
	if (p->v6) {
		ip_len = IP6_LEN + new_udp_len;
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, dst, 16);
	} else {
		ip_len = IP4_LEN + new_udp_len;
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, src + 12, 4);
		__builtin_memcpy(&fib.ipv4_dst, dst + 12, 4);
	}
	fib.tot_len = ip_len;
	long rc = bpf_fib_lookup(ctx, fibp, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return local(ctx, o);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && fib.ifindex > 0) {
		// A device without link-layer addresses (a tunnel) answers with zero MACs: an
		// Ethernet frame must not be sent there.
		__u64 d = 0;
		__builtin_memcpy(&d, fib.dmac, 6);
		if (d == 0 || !can_send(ctx, fib.ifindex))
			return -1;
		__builtin_memcpy(o->dmac, fib.dmac, 6);
		__builtin_memcpy(o->smac, fib.smac, 6);
		o->ifindex = fib.ifindex;
		return 0;
	}
#undef fib
	if (rc != BPF_FIB_LKUP_RET_FWD_DISABLED)
		return -1;
	// The relay's own lookup at install answers instead, as in the TC program.
	if (egress == EGRESS_LOCAL || (!p->v6 && dst[12] == 127))
		return local(ctx, o);
	if (egress == 0 || egress == EGRESS_LOCAL)
		return -1;
	struct next_hop_key key;
	__builtin_memcpy(key.ip, dst, 16);
	struct next_hop *nh = bpf_map_lookup_elem(&next_hops, &key);
	if (!nh || nh->ifindex != egress || ip_len > nh->mtu || !can_send(ctx, egress))
		return -1;
	__builtin_memcpy(o->dmac, nh->dmac, 6);
	__builtin_memcpy(o->smac, nh->smac, 6);
	o->ifindex = egress;
	return 0;
}

// A CHECKSUM_PARTIAL datagram's check field is its folded pseudo-header sum (udp4_hwcsum,
// udp6_set_csum: ~csum_tcpudp_magic). A zero IPv4 check means none: never PARTIAL.
static __always_inline int is_partial(const struct pkt *p)
{
	if (p->check == 0)
		return 0;
	__s64 s = pseudo_sum(p->src, p->dst, p->udp_len, p->v6);
	if (s < 0)
		return 1; // the careful case
	return (__u16)fold((__u64)(__u32)s) == p->check;
}

// The new UDP check field after the words in `old` became those in `new`.
static __always_inline int udp_check(const struct pkt *p, const struct csum_words *old,
				     const struct csum_words *new, __be16 *check)
{
	if (!p->v6 && p->check == 0) {
		*check = 0;
		return 0;
	}
	__u32 seed = (__u16)~p->check;
	__s64 s = bpf_csum_diff((__be32 *)old, sizeof(*old), (__be32 *)new, sizeof(*new), seed);
	if (s < 0)
		return -1;
	*check = udp_check_field((__u64)(__u32)s);
	return 0;
}

// Writes a full UDP checksum over the rewritten datagram at `l4` (see Checksums at the top).
DEFINE_FULL_CHECKSUM(full_checksum, struct xdp_md, bpf_xdp_load_bytes, bpf_xdp_store_bytes)

// The headers of a frame, copied out to be rewritten and written back elsewhere.
struct hdrs {
	__u8 b[HDR6];
};

// Per CPU, off the stack (see relay()).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hdrs);
} hdr_scratch SEC(".maps");

static __always_inline int load_hdrs(struct xdp_md *ctx, struct hdrs *h, __u8 v6)
{
	if (v6)
		return (int)bpf_xdp_load_bytes(ctx, 0, h->b, HDR6);
	return (int)bpf_xdp_load_bytes(ctx, 0, h->b, HDR4);
}

static __always_inline int store_hdrs(struct xdp_md *ctx, const struct hdrs *h, __u8 v6)
{
	if (v6)
		return (int)bpf_xdp_store_bytes(ctx, 0, (void *)h->b, HDR6);
	return (int)bpf_xdp_store_bytes(ctx, 0, (void *)h->b, HDR4);
}

// Rewrites the copied headers for the new addresses, ports and length, and the MACs when the
// frame leaves through a device. `check` is the new UDP check field.
static __always_inline int rewrite(struct hdrs *h, const struct pkt *p, const struct csum_words *nw,
				   __be16 check, const struct out *o)
{
	__u32 l4;
	if (p->v6) {
		__be16 plen = nw->udp_len;
		__builtin_memcpy(h->b + ETH_LEN + 4, &plen, 2);
		h->b[ETH_LEN + 7] = RELAY_TTL;
		__builtin_memcpy(h->b + ETH_LEN + 8, nw->src, 16);
		__builtin_memcpy(h->b + ETH_LEN + 24, nw->dst, 16);
		l4 = ETH_LEN + IP6_LEN;
	} else {
		// The IPv4 header checksum, updated for what changes in it (incrementally, like
		// the UDP one, so a header that arrived corrupt stays so).
		__u32 old[5], new[5];
		__builtin_memcpy(old, h->b + ETH_LEN, IP4_LEN);
		__be16 old_check;
		__builtin_memcpy(&old_check, h->b + ETH_LEN + 10, 2);
		__be16 tot = bpf_htons(IP4_LEN + bpf_ntohs(nw->udp_len));
		__builtin_memcpy(h->b + ETH_LEN + 2, &tot, 2);
		h->b[ETH_LEN + 8] = RELAY_TTL;
		__builtin_memcpy(h->b + ETH_LEN + 12, nw->src + 12, 4);
		__builtin_memcpy(h->b + ETH_LEN + 16, nw->dst + 12, 4);
		__builtin_memcpy(new, h->b + ETH_LEN, IP4_LEN);
		// Word 2 holds TTL, protocol and the check field: the check out of both sums.
		old[2] &= bpf_htonl(0xffff0000);
		new[2] &= bpf_htonl(0xffff0000);
		__s64 s = bpf_csum_diff(old, IP4_LEN, new, IP4_LEN, (__u16)~old_check);
		if (s < 0)
			return -1;
		__u16 c = ~fold((__u64)(__u32)s) & 0xffff;
		__builtin_memcpy(h->b + ETH_LEN + 10, &c, 2);
		l4 = ETH_LEN + IP4_LEN;
	}
	__builtin_memcpy(h->b + l4, &nw->sport, 2);
	__builtin_memcpy(h->b + l4 + 2, &nw->dport, 2);
	__builtin_memcpy(h->b + l4 + 4, &nw->udp_len, 2);
	__builtin_memcpy(h->b + l4 + 6, &check, 2);
	if (o->ifindex) {
		__builtin_memcpy(h->b, o->dmac, 6);
		__builtin_memcpy(h->b + 6, o->smac, 6);
	}
	return 0;
}

static __always_inline int deliver(struct xdp_md *ctx, const struct out *o)
{
	if (o->ifindex == 0)
		return XDP_PASS;
	if (o->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return (int)bpf_redirect(o->ifindex, 0);
}

// After the frame was resized there is no way back: drop rather than send garbage.
#define BROKEN XDP_DROP

static __always_inline void words(struct csum_words *w, const __u8 src[16], const __u8 dst[16],
				  __be16 sport, __be16 dport, __u32 udp_len, __u32 cd)
{
	__builtin_memcpy(w->src, src, 16);
	__builtin_memcpy(w->dst, dst, 16);
	w->pseudo_len = bpf_htonl(udp_len);
	w->sport = sport;
	w->dport = dport;
	w->udp_len = bpf_htons(udp_len);
	w->zero = 0;
	w->cd = cd;
}

// What a relayed datagram becomes: its new addresses, ports and UDP length, where it goes when
// the FIB will not say, the ChannelData header's word before and after (0 where there is none:
// the datagram loses it on its way to a peer, gains it on its way to a client, and has it both
// times relay to relay), how far the headers move, and where it is counted.
struct relay_to {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u32 udp_len;
	__u32 egress;
	__u32 old_cd;
	__u32 new_cd;
	__u32 peer_slot; // counted to the peer when COUNT_TO_PEER
	__u32 client_slot; // counted from the peer when COUNT_FROM_PEER
	__u32 payload;
	__s32 shift; // bpf_xdp_adjust_head's delta: +4 to a peer, -4 to a client, 0 relay to relay
	__u8 counts;
};

#define COUNT_TO_PEER 1
#define COUNT_FROM_PEER 2

// A subprogram of its own (not inlined), its copy of the headers and the FIB parameters in
// per-CPU maps: with three callers it would not fit the 512 bytes of stack a call chain has.
static __attribute__((noinline)) int relay(struct xdp_md *ctx, const struct pkt *p,
					    const struct relay_to *t)
{
	struct out o = {};
	if (route(ctx, p, t->src, t->dst, t->sport, t->dport, t->udp_len, t->egress, &o) < 0)
		return XDP_PASS;
	int partial = is_partial(p);
	if (partial && o.ifindex)
		return XDP_PASS;

	struct csum_words old, new;
	words(&old, p->src, p->dst, p->sport, p->dport, p->udp_len, t->old_cd);
	words(&new, t->src, t->dst, t->sport, t->dport, t->udp_len, t->new_cd);
	__be16 check;
	if (udp_check(p, &old, &new, &check) < 0)
		return XDP_PASS;
	__u32 zero = 0;
	struct hdrs *h = bpf_map_lookup_elem(&hdr_scratch, &zero);
	if (!h || load_hdrs(ctx, h, p->v6) < 0 || rewrite(h, p, &new, check, &o) < 0)
		return XDP_PASS;

	// To the peer the headers move 4 bytes on, over the ChannelData header; to the client 4
	// bytes back, and the ChannelData header takes the place of the old UDP header's second
	// half, right before the payload; relay to relay they stay and the ChannelData header is
	// rewritten. A failed adjust_head changed nothing yet.
	if (t->shift && bpf_xdp_adjust_head(ctx, t->shift) < 0)
		return XDP_PASS;
	// From here on the frame is ours.
	__u32 hl = p->v6 ? HDR6 : HDR4;
	if (store_hdrs(ctx, h, p->v6) < 0)
		return BROKEN;
	if (t->new_cd && bpf_xdp_store_bytes(ctx, hl, (void *)&t->new_cd, CD_LEN) < 0)
		return BROKEN;
	if (partial && full_checksum(ctx, hl - UDP_LEN, t->src, t->dst, t->udp_len, p->v6) < 0)
		return BROKEN;
	if (t->counts & COUNT_TO_PEER)
		count(t->peer_slot, 1, t->payload);
	if (t->counts & COUNT_FROM_PEER)
		count(t->client_slot, 0, t->payload);
	return deliver(ctx, &o);
}

// The datagram to `back`'s client: from its server address, in ChannelData on its channel, counted
// on its slot as from the peer.
static __always_inline void to_client(struct relay_to *t, const struct peer_value *back,
				      __u32 udp_len, __u32 payload)
{
	__builtin_memcpy(t->src, back->server_ip, 16);
	__builtin_memcpy(t->dst, back->client_ip, 16);
	t->sport = back->server_port;
	t->dport = back->client_port;
	t->udp_len = udp_len;
	t->egress = back->egress;
	t->payload = payload;
	struct {
		__be16 channel;
		__be16 len;
	} cd = { back->channel, bpf_htons(payload) };
	__builtin_memcpy(&t->new_cd, &cd, CD_LEN);
	t->client_slot = back->slot;
}

// Relay to relay: the peer is a relayed address of another allocation on this host (both parties
// of a call relayed by this server). When that allocation has a channel back to ours, the
// datagram becomes ChannelData for its client at once, as in relay.bpf.c's hairpin(): the local
// stack would refuse it (see Delivery) and userspace would relay it twice. NOT_MINE when it
// does not apply.
static __always_inline int hairpin(struct xdp_md *ctx, const struct pkt *p,
				   const struct channel_value *v, __u32 cd_word, __u32 payload)
{
	struct peer_value *back = back_route(v);
	if (!back)
		return NOT_MINE;
	// A change of family on the way is left to userspace.
	if (p->v6 == is_mapped_v4(back->client_ip) || p->v6 == is_mapped_v4(back->server_ip))
		return XDP_PASS;
	struct relay_to t = {};
	to_client(&t, back, p->udp_len, payload);
	t.old_cd = cd_word;
	t.peer_slot = v->slot;
	t.counts = COUNT_TO_PEER | COUNT_FROM_PEER;
	return relay(ctx, p, &t);
}

static __always_inline int to_peer(struct xdp_md *ctx, struct pkt *p)
{
	__u32 hl = p->v6 ? HDR6 : HDR4;
	struct {
		__be16 channel;
		__be16 len;
	} cd;
	if (p->udp_len < UDP_LEN + CD_LEN)
		return NOT_MINE;
	if (bpf_xdp_load_bytes(ctx, hl, &cd, sizeof(cd)) < 0)
		return NOT_MINE;
	__u16 channel = bpf_ntohs(cd.channel);
	__u32 payload = bpf_ntohs(cd.len);
	if (!is_channel_data(channel, payload, p->udp_len - UDP_LEN))
		return NOT_MINE;

	struct channel_value *v = find_channel(p->src, p->dst, p->sport, p->dport, cd.channel);
	if (!v)
		return NOT_MINE;
	__u32 cd_word;
	__builtin_memcpy(&cd_word, &cd, CD_LEN);
	int rc = hairpin(ctx, p, v, cd_word, payload);
	if (rc != NOT_MINE)
		return rc;
	if (p->v6 == is_mapped_v4(v->peer_ip) || p->v6 == is_mapped_v4(v->relay_ip))
		return XDP_PASS;
	struct relay_to t = {};
	__builtin_memcpy(t.src, v->relay_ip, 16);
	__builtin_memcpy(t.dst, v->peer_ip, 16);
	t.sport = v->relay_port;
	t.dport = v->peer_port;
	t.udp_len = UDP_LEN + payload;
	t.egress = v->egress;
	t.old_cd = cd_word;
	t.peer_slot = v->slot;
	t.payload = payload;
	t.shift = CD_LEN;
	t.counts = COUNT_TO_PEER;
	return relay(ctx, p, &t);
}

static __always_inline int from_peer(struct xdp_md *ctx, struct pkt *p)
{
	struct peer_value *v = find_peer(p->src, p->dst, p->sport, p->dport);
	if (!v)
		return NOT_MINE;
	if (p->v6 == is_mapped_v4(v->client_ip) || p->v6 == is_mapped_v4(v->server_ip))
		return XDP_PASS;
	if (p->udp_len + CD_LEN > 0xffff - IP6_LEN)
		return XDP_PASS;
	struct relay_to t = {};
	to_client(&t, v, p->udp_len + CD_LEN, p->udp_len - UDP_LEN);
	t.shift = -CD_LEN;
	t.counts = COUNT_FROM_PEER;
	return relay(ctx, p, &t);
}

SEC("xdp")
int turn_relay_xdp(struct xdp_md *ctx)
{
	struct pkt p = {};
	if (parse(ctx, &p) < 0)
		return XDP_PASS;
	int rc = to_peer(ctx, &p);
	if (rc != NOT_MINE)
		return rc;
	rc = from_peer(ctx, &p);
	return rc == NOT_MINE ? XDP_PASS : rc;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
