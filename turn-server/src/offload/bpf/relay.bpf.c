// SPDX-License-Identifier: MIT OR Apache-2.0 OR GPL-2.0
//
// The kernel fast path of the TURN relay: a TC classifier at ingress that relays ChannelData
// between a client and a peer without a trip through userspace. The relay process mirrors each
// live channel binding into the maps of relay_maps.h (src/offload/maps.rs has the same layouts); anything
// this program does not fully understand goes on unchanged (TC_ACT_UNSPEC, i.e. TCX_NEXT), so the
// userspace relay and any other program on the interface still see it.
//
// client -> peer: UDP {client -> server} carrying exactly one ChannelData message on a bound
//   channel becomes UDP {relay -> peer} carrying its payload (4 bytes shorter).
// peer -> client: UDP {peer -> relay} on a bound channel becomes UDP {server -> client} carrying
//   ChannelData {channel, length} + the payload (4 bytes longer).
// When the client's family is not the peer's (an allocation whose relayed address is of the
// other family), the IP header is replaced by one of the other family: see translate().
//
// ## Checksums (what the kernel does, as read in net/core/filter.c and include/linux/skbuff.h)
//
// bpf_skb_adjust_room(BPF_ADJ_ROOM_NET) inserts or removes bytes right after the IP header
// (bpf_skb_net_hdr_push/pop -> bpf_skb_generic_push/pop): the MAC and IP headers are memmoved
// and mac_header/network_header follow them, but transport_header (unless it equalled
// network_header) and csum_start are NOT touched. Both are offsets from skb->head while the
// payload stays where it was, so after the move they point 4 bytes off the new UDP header: at
// UDP+4 after a push, at UDP-4 (inside the IP header) after a pop. Per ip_summed state:
// - CHECKSUM_NONE: the UDP check field is a full checksum; incremental bpf_l4_csum_replace
//   updates keep it right. The receiver verifies it in software.
// - CHECKSUM_UNNECESSARY (what a NIC marks after verifying): adjust_room resets it to NONE (no
//   BPF_F_ADJ_ROOM_NO_CSUM_RESET here), so the receiver verifies our result in full.
// - CHECKSUM_COMPLETE: skb->csum holds the sum of the data; generic_pop subtracts what it
//   removes, inserted bytes are zeros, bpf_skb_store_bytes(BPF_F_RECOMPUTE_CSUM) tracks what it
//   rewrites, and l4_csum_replace with BPF_F_PSEUDO_HDR adjusts skb->csum for a check-field
//   change that no data change cancels. Every edit below is one of those, so skb->csum stays
//   the sum of the final packet.
// - CHECKSUM_PARTIAL (what local sockets send over lo and veth): the check field holds only the
//   pseudo-header sum, the rest is summed later from csum_start, which adjust_room left 4 bytes
//   off. A local receiver trusts a PARTIAL skb only while csum_start is at or after its UDP
//   header (skb_csum_unnecessary); after our pop it is before it, so the receiver verifies the
//   field as a full checksum and drops the datagram (UDP InCsumErrors). And a device that fills
//   the checksum in (a NIC, or skb_checksum_help when tx offload is off) writes it at the wrong
//   place, corrupting the datagram (seen on veth with tx off on the egress side: both directions
//   were dropped by the receiver with UDP InCsumErrors). No helper can move csum_start, and
//   __sk_buff does not show ip_summed. So: PARTIAL is detected (a non-pseudo l4_csum_replace is
//   a no-op only on PARTIAL skbs, see is_partial), its check field is replaced by a full
//   checksum computed here (right whichever way the receiver looks at it), and a PARTIAL skb is
//   relayed only to a local destination; one that would leave through a device goes to
//   userspace instead.
// The tests prove NONE (veth with tx offload off; the receivers verify), PARTIAL (loopback) and
// a zero IPv4 check (loopback with SO_NO_CHECK); COMPLETE rests on the reading above.
// Checksum arithmetic is position-independent for 16-bit aligned data: the ChannelData header
// sits at an even offset, so removing or inserting it is a 4-byte delta on the UDP checksum.
// An IPv4 UDP check of 0 (no checksum) stays 0 (BPF_F_MARK_MANGLED_0 skips it); a computed 0
// becomes 0xffff.
//
// ## Delivery
// bpf_fib_lookup on the rewritten addresses before anything is changed (a packet cannot be
// un-rewritten): NOT_FWDED (a local destination) -> TC_ACT_OK, the local stack delivers it;
// SUCCESS -> bpf_redirect_neigh out the egress device; FWD_DISABLED (forwarding is off on the
// ingress device, as on most hosts) -> the egress the relay looked up when it installed the
// route (a local address, or an interface); anything else (unreachable, fragmentation needed, no
// egress known, or the datagram would outgrow the egress device's MTU) -> userspace, unchanged.
// See route(). Local delivery has one more rule, for IPv4: see deliverable(). A peer that is
// another allocation's relayed address on this host is not delivered but relayed on at once:
// see hairpin().

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "relay_maps.h"

#define ETH_LEN 14
#define IP4_LEN 20
#define IP6_LEN 40
#define UDP_LEN 8
#define CD_LEN 4
#define LOOPBACK_IFINDEX 1 // lo, in every network namespace
#define RELAY_TTL 64
#define AF_INET 2
#define AF_INET6 10

// What the parser found: the packet's addresses (16-byte form), ports, lengths and offsets.
struct pkt {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u32 udp_len; // host order, the UDP length field (header included)
	__be16 old_udp_len;
	__be16 old_ip_len; // IPv4 total length or IPv6 payload length, as on the wire
	__be16 old_ttl_proto; // IPv4 only: the 16-bit word holding TTL and protocol
	__u8 old_hop; // IPv6 hop limit
	__u8 v6;
	__u32 l4; // offset of the UDP header
};

// Parses eth + IPv4/IPv6 + UDP without options, fragments or extension headers.
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	if (skb->gso_segs > 1)
		return -1;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, ETH_LEN, &ip, sizeof(ip)) < 0)
			return -1;
		if (ip.version != 4 || ip.ihl != 5 || ip.protocol != IPPROTO_UDP)
			return -1;
		// MF set or a fragment offset: not a whole datagram.
		if (ip.frag_off & bpf_htons(0x3fff))
			return -1;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (tot < IP4_LEN + UDP_LEN || ETH_LEN + tot != skb->len)
			return -1;
		map_v4(p->src, ip.saddr);
		map_v4(p->dst, ip.daddr);
		p->old_ip_len = ip.tot_len;
		__builtin_memcpy(&p->old_ttl_proto, &ip.ttl, 2);
		p->v6 = 0;
		p->l4 = ETH_LEN + IP4_LEN;
		p->udp_len = tot - IP4_LEN;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, ETH_LEN, &ip6, sizeof(ip6)) < 0)
			return -1;
		if (ip6.version != 6 || ip6.nexthdr != IPPROTO_UDP)
			return -1;
		__u32 plen = bpf_ntohs(ip6.payload_len);
		if (plen < UDP_LEN || ETH_LEN + IP6_LEN + plen != skb->len)
			return -1;
		__builtin_memcpy(p->src, &ip6.saddr, 16);
		__builtin_memcpy(p->dst, &ip6.daddr, 16);
		p->old_ip_len = ip6.payload_len;
		p->old_hop = ip6.hop_limit;
		p->v6 = 1;
		p->l4 = ETH_LEN + IP6_LEN;
		p->udp_len = plen;
	} else {
		return -1;
	}
	struct udphdr udp;
	if (bpf_skb_load_bytes(skb, p->l4, &udp, sizeof(udp)) < 0)
		return -1;
	if (bpf_ntohs(udp.len) != p->udp_len)
		return -1;
	p->sport = udp.source;
	p->dport = udp.dest;
	p->old_udp_len = udp.len;
	return 0;
}

// The kernel's answer for the rewritten datagram: 0 local, > 0 the egress ifindex, < 0 none.
static __always_inline int lookup(struct __sk_buff *skb, __u8 out_v6, const __u8 src[16],
				  const __u8 dst[16], __be16 sport, __be16 dport, __u32 new_udp_len,
				  __u32 egress)
{
	// Off the stack: the program's call chain may use 512 bytes of it in all.
	__u32 zero = 0;
	struct bpf_fib_lookup *fibp = bpf_map_lookup_elem(&fib_params, &zero);
	if (!fibp)
		return -1;
	__builtin_memset(fibp, 0, sizeof(*fibp));
#define fib (*fibp)
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = sport;
	fib.dport = dport;
	fib.ifindex = skb->ingress_ifindex;
	if (out_v6) {
		fib.family = AF_INET6;
		fib.tot_len = IP6_LEN + new_udp_len;
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, dst, 16);
	} else {
		fib.family = AF_INET;
		fib.tot_len = IP4_LEN + new_udp_len;
		__builtin_memcpy(&fib.ipv4_src, src + 12, 4);
		__builtin_memcpy(&fib.ipv4_dst, dst + 12, 4);
	}
	// SKIP_NEIGH: bpf_redirect_neigh resolves the neighbour itself.
	long rc = bpf_fib_lookup(skb, fibp, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return 0;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && fib.ifindex > 0)
		return (int)fib.ifindex;
#undef fib
	// The lookups check forwarding on the ingress device before they look at the route, so a
	// host that does not forward gets FWD_DISABLED (IPv4 even for its own addresses; the IPv6
	// one answers NOT_FWDED for those). The relay's own route lookup at install time answers
	// instead: a relay is the source of what it sends, not a router. 127.0.0.0/8 is local.
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED) {
		if (egress == EGRESS_LOCAL || (!out_v6 && dst[12] == 127))
			return 0;
		if (egress > 0 && egress < EGRESS_LOCAL)
			return (int)egress;
	}
	return -1;
}

// Where the rewritten packet goes: 0 local, > 0 the egress ifindex, < 0 leave it to userspace.
static __always_inline int route(struct __sk_buff *skb, __u8 out_v6, const __u8 src[16],
				 const __u8 dst[16], __be16 sport, __be16 dport, __u32 new_udp_len,
				 __u32 egress)
{
	int where = lookup(skb, out_v6, src, dst, sport, dport, new_udp_len, egress);
	if (where <= 0)
		return where;
	// The FIB checks the MTU only when it forwards; the egress hint does not. A datagram that
	// grew past the device's MTU goes to userspace, which fragments or refuses it as for any
	// datagram it sends.
	__u32 l3_len = (out_v6 ? IP6_LEN : IP4_LEN) + new_udp_len;
	__u32 mtu_len = l3_len;
	if (bpf_check_mtu(skb, (__u32)where, &mtu_len, 0, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return -1;
	return where;
}

// True for a CHECKSUM_PARTIAL skb: only there does a non-pseudo-header change leave the check
// field alone (inet_proto_csum_replace2). A zero IPv4 check means no checksum: never PARTIAL.
static __always_inline int is_partial(struct __sk_buff *skb, __u32 csum_off)
{
	__u16 before, after;
	if (bpf_skb_load_bytes(skb, csum_off, &before, 2) < 0 || before == 0)
		return 0;
	if (bpf_l4_csum_replace(skb, csum_off, 0, bpf_htons(1), 2) < 0)
		return 1; // treat as the careful case
	if (bpf_skb_load_bytes(skb, csum_off, &after, 2) < 0)
		return 1;
	if (after == before)
		return 1;
	bpf_l4_csum_replace(skb, csum_off, bpf_htons(1), 0, 2 | BPF_F_MARK_MANGLED_0);
	return 0;
}

// Tracked stores: on a CHECKSUM_COMPLETE skb the sum of the data follows what they write.
static __always_inline long store_tracked(struct __sk_buff *skb, __u32 off, const void *from,
					  __u32 len)
{
	return bpf_skb_store_bytes(skb, off, from, len, BPF_F_RECOMPUTE_CSUM);
}

// Writes a full UDP checksum over the final packet (see the PARTIAL notes at the top, and
// translate()).
DEFINE_FULL_CHECKSUM(full_checksum, struct __sk_buff, bpf_skb_load_bytes, store_tracked)

// Rewrites addresses, ports, lengths and TTL in place and fixes both checksums for them. The
// stores are not tracked (no BPF_F_RECOMPUTE_CSUM): each is cancelled by its checksum update.
static __always_inline int rewrite_headers(struct __sk_buff *skb, const struct pkt *p,
					   const __u8 src[16], const __u8 dst[16], __be16 sport,
					   __be16 dport, __u32 new_udp_len)
{
	__u32 l4 = p->l4;
	__u32 csum = l4 + 6;
	const __u64 pseudo = BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0;
	__be16 udp_len = bpf_htons(new_udp_len);
	if (p->v6) {
		for (int i = 0; i < 16; i += 4) {
			__u32 from, to;
			__builtin_memcpy(&from, p->src + i, 4);
			__builtin_memcpy(&to, src + i, 4);
			if (bpf_l4_csum_replace(skb, csum, from, to, pseudo | 4) < 0)
				return -1;
			__builtin_memcpy(&from, p->dst + i, 4);
			__builtin_memcpy(&to, dst + i, 4);
			if (bpf_l4_csum_replace(skb, csum, from, to, pseudo | 4) < 0)
				return -1;
		}
		__be16 plen = udp_len;
		__u8 hop = RELAY_TTL;
		if (bpf_skb_store_bytes(skb, ETH_LEN + 4, &plen, 2, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_LEN + 7, &hop, 1, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_LEN + 8, src, 16, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_LEN + 24, dst, 16, 0) < 0)
			return -1;
	} else {
		__u32 from_s, to_s, from_d, to_d;
		__builtin_memcpy(&from_s, p->src + 12, 4);
		__builtin_memcpy(&to_s, src + 12, 4);
		__builtin_memcpy(&from_d, p->dst + 12, 4);
		__builtin_memcpy(&to_d, dst + 12, 4);
		__u32 iph_csum = ETH_LEN + 10;
		__be16 tot = bpf_htons(IP4_LEN + new_udp_len);
		__be16 ttl_proto = bpf_htons((RELAY_TTL << 8) | IPPROTO_UDP);
		if (bpf_l4_csum_replace(skb, csum, from_s, to_s, pseudo | 4) < 0 ||
		    bpf_l4_csum_replace(skb, csum, from_d, to_d, pseudo | 4) < 0 ||
		    bpf_l3_csum_replace(skb, iph_csum, from_s, to_s, 4) < 0 ||
		    bpf_l3_csum_replace(skb, iph_csum, from_d, to_d, 4) < 0 ||
		    bpf_l3_csum_replace(skb, iph_csum, p->old_ip_len, tot, 2) < 0 ||
		    bpf_l3_csum_replace(skb, iph_csum, p->old_ttl_proto, ttl_proto, 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, ETH_LEN + 2, &tot, 2, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_LEN + 8, &ttl_proto, 2, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_LEN + 12, &to_s, 4, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_LEN + 16, &to_d, 4, 0) < 0)
			return -1;
	}
	// The UDP length is both in the pseudo header and in the UDP header: two updates. On a
	// PARTIAL skb only the pseudo-header one applies, as it should.
	const __u64 plain = BPF_F_MARK_MANGLED_0;
	if (bpf_l4_csum_replace(skb, csum, p->sport, sport, plain | 2) < 0 ||
	    bpf_l4_csum_replace(skb, csum, p->dport, dport, plain | 2) < 0 ||
	    bpf_l4_csum_replace(skb, csum, p->old_udp_len, udp_len, pseudo | 2) < 0 ||
	    bpf_l4_csum_replace(skb, csum, p->old_udp_len, udp_len, plain | 2) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, l4, &sport, 2, 0) < 0 ||
	    bpf_skb_store_bytes(skb, l4 + 2, &dport, 2, 0) < 0 ||
	    bpf_skb_store_bytes(skb, l4 + 4, &udp_len, 2, 0) < 0)
		return -1;
	return 0;
}

// Rebuilds the datagram in the other address family (an allocation with a relayed address of
// each family, RFC 8656 section 7.1): bpf_skb_change_proto resizes the room for the IP header
// right after the MAC header, adjust_room takes the ChannelData header out (`cd_word` 0) or makes
// room for it, and the IP and UDP headers are written whole, with a full UDP checksum: the old
// one shares nothing useful with the new. Every store is tracked (BPF_F_RECOMPUTE_CSUM) and the
// helpers keep skb->csum right for what they insert (zeros) and remove, so a CHECKSUM_COMPLETE
// skb's sum stays that of the final packet. The Ethernet type is written for the record only
// (outside the sum): the stack reads skb->protocol, which change_proto set, and
// bpf_redirect_neigh writes a new MAC header.
static __always_inline int translate(struct __sk_buff *skb, __u8 out_v6, const __u8 src[16],
				     const __u8 dst[16], __be16 sport, __be16 dport,
				     __u32 new_udp_len, __u32 cd_word)
{
	__be16 proto = out_v6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
	if (bpf_skb_change_proto(skb, proto, 0) < 0)
		return -1;
	if (bpf_skb_adjust_room(skb, cd_word ? CD_LEN : -CD_LEN, BPF_ADJ_ROOM_NET, 0) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, 12, &proto, 2, 0) < 0)
		return -1;
	__u32 l4;
	if (out_v6) {
		struct ipv6hdr ip6 = {};
		__be32 first = bpf_htonl(0x60000000); // version 6, no traffic class or flow label
		__builtin_memcpy(&ip6, &first, 4);
		ip6.payload_len = bpf_htons(new_udp_len);
		ip6.nexthdr = IPPROTO_UDP;
		ip6.hop_limit = RELAY_TTL;
		__builtin_memcpy(&ip6.saddr, src, 16);
		__builtin_memcpy(&ip6.daddr, dst, 16);
		if (bpf_skb_store_bytes(skb, ETH_LEN, &ip6, sizeof(ip6), BPF_F_RECOMPUTE_CSUM) < 0)
			return -1;
		l4 = ETH_LEN + IP6_LEN;
	} else {
		struct iphdr ip = {};
		ip.version = 4;
		ip.ihl = 5;
		ip.tot_len = bpf_htons(IP4_LEN + new_udp_len);
		ip.frag_off = bpf_htons(0x4000); // DF, as Linux UDP sockets send by default
		ip.ttl = RELAY_TTL;
		ip.protocol = IPPROTO_UDP;
		__builtin_memcpy(&ip.saddr, src + 12, 4);
		__builtin_memcpy(&ip.daddr, dst + 12, 4);
		__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&ip, sizeof(ip), 0);
		if (sum < 0)
			return -1;
		ip.check = ~fold((__u64)sum) & 0xffff;
		if (bpf_skb_store_bytes(skb, ETH_LEN, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM) < 0)
			return -1;
		l4 = ETH_LEN + IP4_LEN;
	}
	struct {
		struct udphdr udp;
		__u32 cd;
	} hdr = {};
	hdr.udp.source = sport;
	hdr.udp.dest = dport;
	hdr.udp.len = bpf_htons(new_udp_len);
	hdr.cd = cd_word;
	__u32 size = cd_word ? sizeof(hdr) : sizeof(hdr.udp);
	if (bpf_skb_store_bytes(skb, l4, &hdr, size, BPF_F_RECOMPUTE_CSUM) < 0)
		return -1;
	return full_checksum(skb, l4, src, dst, new_udp_len, out_v6);
}

static __always_inline int deliver(int where)
{
	if (where == 0)
		return TC_ACT_OK;
	return (int)bpf_redirect_neigh((__u32)where, 0, 0, 0);
}

// A translated datagram for this host goes in again at the ingress device rather than on up
// the stack: a datagram sent over lo keeps the sender's route (skb dst) attached, and the IP
// layer would follow that old family's route with the new family's packet and lose it. A
// redirect to ingress scrubs the dst; the program sees the datagram once more and passes it.
static __always_inline int deliver_translated(struct __sk_buff *skb, int where)
{
	if (where == 0)
		return (int)bpf_redirect(skb->ifindex, BPF_F_INGRESS);
	return deliver(where);
}

// Whether the IP layer of this host takes a rewritten datagram that is for this host (where ==
// 0). IPv4 input routing calls a datagram from one of the host's own addresses a martian
// (fib_validate_source, unless accept_local is set), and a relay address or the server's is the
// source of all the program sends. A datagram that came in on lo escapes that: it keeps its
// local sender's route (skb dst), which the IP layer follows instead of routing it again, but
// only while the family stays (deliver_translated drops the route). So IPv4 is delivered here
// only from lo and untranslated; the rest goes to userspace. IPv6 input has no such rule.
static __always_inline int deliverable(struct __sk_buff *skb, int where, __u8 out_v6,
				       __u8 translated)
{
	return where != 0 || out_v6 || (!translated && skb->ingress_ifindex == LOOPBACK_IFINDEX);
}

// Whether the program may send the rewritten datagram where route() said (`where`): somewhere,
// a PARTIAL skb only to this host (see Checksums at the top), and to this host only what its IP
// layer takes.
static __always_inline int may_send(struct __sk_buff *skb, int where, int partial, __u8 out_v6,
				    __u8 translated)
{
	return where >= 0 && !(partial && where > 0) && deliverable(skb, where, out_v6, translated);
}

// After bpf_skb_adjust_room fails midway there is no way back: drop rather than send garbage.
#define BROKEN TC_ACT_SHOT

// Relay to relay: the peer is a relayed address of another allocation on this host (both
// parties of a call relayed by this server, as with iceTransportPolicy "relay"). When that
// allocation has a channel back to ours, the datagram becomes ChannelData for its client at
// once: the same length, other addresses and channel number, and no trip through this host's
// IP input, which would refuse an IPv4 datagram from our own address that came in through a
// device (see deliverable()). Both allocations' checks hold: each one's route is in the maps.
// Counted for both. TC_ACT_UNSPEC, with the packet untouched, when it does not apply.
static __always_inline int hairpin(struct __sk_buff *skb, const struct pkt *p,
				   const struct channel_value *out, __be16 old_channel, __u32 payload,
				   int partial)
{
	struct peer_value *v = back_route(out);
	if (!v)
		return TC_ACT_UNSPEC;
	// Read in place: a copy would cost stack the program lacks and be no safer (a value removed
	// on another CPU may be reused at once either way; see the maps' note).
	const struct peer_value *back = v;
	__u8 out_v6 = !is_mapped_v4(back->client_ip);
	// A change of family on the way is left to userspace.
	if (out_v6 != p->v6 || out_v6 == is_mapped_v4(back->server_ip))
		return TC_ACT_UNSPEC;
	int where = route(skb, out_v6, back->server_ip, back->client_ip, back->server_port,
			  back->client_port, p->udp_len, back->egress);
	if (!may_send(skb, where, partial, out_v6, 0))
		return TC_ACT_UNSPEC;

	if (rewrite_headers(skb, p, back->server_ip, back->client_ip, back->server_port,
			    back->client_port, p->udp_len) < 0)
		return BROKEN;
	// The channel number, an untracked pair as in rewrite_headers.
	if (bpf_l4_csum_replace(skb, p->l4 + 6, old_channel, back->channel,
				BPF_F_MARK_MANGLED_0 | 2) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4 + UDP_LEN, &back->channel, 2, 0) < 0)
		return BROKEN;
	if (partial && full_checksum(skb, p->l4, back->server_ip, back->client_ip, p->udp_len,
				     out_v6) < 0)
		return BROKEN;
	count(out->slot, 1, payload);
	count(back->slot, 0, payload);
	return deliver(where);
}

static __always_inline int to_peer(struct __sk_buff *skb, struct pkt *p)
{
	struct {
		__be16 channel;
		__be16 len;
	} cd;
	if (p->udp_len < UDP_LEN + CD_LEN)
		return TC_ACT_UNSPEC;
	if (bpf_skb_load_bytes(skb, p->l4 + UDP_LEN, &cd, sizeof(cd)) < 0)
		return TC_ACT_UNSPEC;
	__u16 channel = bpf_ntohs(cd.channel);
	__u32 payload = bpf_ntohs(cd.len);
	if (!is_channel_data(channel, payload, p->udp_len - UDP_LEN))
		return TC_ACT_UNSPEC;

	struct channel_value *v = find_channel(p->src, p->dst, p->sport, p->dport, cd.channel);
	if (!v)
		return TC_ACT_UNSPEC;
	const struct channel_value *route_to = v;
	__u8 out_v6 = !is_mapped_v4(route_to->peer_ip);
	if (out_v6 == is_mapped_v4(route_to->relay_ip))
		return TC_ACT_UNSPEC;

	__u32 new_udp_len = UDP_LEN + payload;
	int where = route(skb, out_v6, route_to->relay_ip, route_to->peer_ip, route_to->relay_port,
			  route_to->peer_port, new_udp_len, route_to->egress);
	if (where < 0)
		return TC_ACT_UNSPEC;
	int partial = is_partial(skb, p->l4 + 6);
	if (where == 0) {
		int rc = hairpin(skb, p, route_to, cd.channel, payload, partial);
		if (rc != TC_ACT_UNSPEC)
			return rc;
	}
	if (!may_send(skb, where, partial, out_v6, out_v6 != p->v6))
		return TC_ACT_UNSPEC;

	// From here on the packet is ours.
	if (out_v6 != p->v6) {
		if (translate(skb, out_v6, route_to->relay_ip, route_to->peer_ip, route_to->relay_port,
			      route_to->peer_port, new_udp_len, 0) < 0)
			return BROKEN;
		count(route_to->slot, 1, payload);
		return deliver_translated(skb, where);
	}
	if (rewrite_headers(skb, p, route_to->relay_ip, route_to->peer_ip, route_to->relay_port,
			    route_to->peer_port, new_udp_len) < 0)
		return BROKEN;
	// Take the ChannelData header out of the sum and the data (an untracked pair, see above).
	__u32 cd_word, zero = 0;
	__builtin_memcpy(&cd_word, &cd, 4);
	if (bpf_l4_csum_replace(skb, p->l4 + 6, cd_word, 0, BPF_F_MARK_MANGLED_0 | 4) < 0 ||
	    bpf_skb_store_bytes(skb, p->l4 + UDP_LEN, &zero, 4, 0) < 0)
		return BROKEN;
	struct udphdr udp;
	if (bpf_skb_load_bytes(skb, p->l4, &udp, sizeof(udp)) < 0)
		return BROKEN;
	// Removes the 4 bytes after the IP header (the new ports); the UDP header is then written
	// again where it now belongs, over its old length, check and the zeroed ChannelData header.
	if (bpf_skb_adjust_room(skb, -CD_LEN, BPF_ADJ_ROOM_NET, 0) < 0)
		return BROKEN;
	if (bpf_skb_store_bytes(skb, p->l4, &udp, sizeof(udp), BPF_F_RECOMPUTE_CSUM) < 0)
		return BROKEN;
	if (partial && full_checksum(skb, p->l4, route_to->relay_ip, route_to->peer_ip, new_udp_len,
				     p->v6) < 0)
		return BROKEN;
	count(route_to->slot, 1, payload);
	return deliver(where);
}

static __always_inline int from_peer(struct __sk_buff *skb, struct pkt *p)
{
	struct peer_value *v = find_peer(p->src, p->dst, p->sport, p->dport);
	if (!v)
		return TC_ACT_UNSPEC;
	const struct peer_value *back = v;
	__u8 out_v6 = !is_mapped_v4(back->client_ip);
	if (out_v6 == is_mapped_v4(back->server_ip))
		return TC_ACT_UNSPEC;
	__u32 payload = p->udp_len - UDP_LEN;
	__u32 new_udp_len = p->udp_len + CD_LEN;
	if (new_udp_len > 0xffff - IP6_LEN)
		return TC_ACT_UNSPEC;
	int where = route(skb, out_v6, back->server_ip, back->client_ip, back->server_port,
			  back->client_port, new_udp_len, back->egress);
	if (where < 0)
		return TC_ACT_UNSPEC;
	int partial = is_partial(skb, p->l4 + 6);
	if (!may_send(skb, where, partial, out_v6, out_v6 != p->v6))
		return TC_ACT_UNSPEC;

	if (out_v6 != p->v6) {
		__u32 cd_word;
		__be16 cd[2] = {back->channel, bpf_htons(payload)};
		__builtin_memcpy(&cd_word, cd, 4);
		if (translate(skb, out_v6, back->server_ip, back->client_ip, back->server_port,
			      back->client_port, new_udp_len, cd_word) < 0)
			return BROKEN;
		count(back->slot, 0, payload);
		return deliver_translated(skb, where);
	}
	if (rewrite_headers(skb, p, back->server_ip, back->client_ip, back->server_port,
			    back->client_port, new_udp_len) < 0)
		return BROKEN;
	struct {
		struct udphdr udp;
		__be16 channel;
		__be16 len;
	} hdr;
	if (bpf_skb_load_bytes(skb, p->l4, &hdr.udp, sizeof(hdr.udp)) < 0)
		return BROKEN;
	hdr.channel = back->channel;
	hdr.len = bpf_htons(payload);
	// The ChannelData header enters the data through the tracked store below, so its share of
	// the check field is a PSEUDO_HDR update: on CHECKSUM_COMPLETE that also moves skb->csum.
	// (On PARTIAL it would wrongly go into the pseudo-header sum; full_checksum replaces it.)
	__u32 cd_word;
	__builtin_memcpy(&cd_word, &hdr.channel, 4);
	if (bpf_l4_csum_replace(skb, p->l4 + 6, 0, cd_word,
				BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4) < 0)
		return BROKEN;
	if (bpf_skb_load_bytes(skb, p->l4 + 6, &hdr.udp.check, 2) < 0)
		return BROKEN;
	// Inserts 4 zero bytes after the IP header; the UDP header moves to the front of them and
	// the ChannelData header takes the place of the old UDP header's second half.
	if (bpf_skb_adjust_room(skb, CD_LEN, BPF_ADJ_ROOM_NET, 0) < 0)
		return BROKEN;
	if (bpf_skb_store_bytes(skb, p->l4, &hdr, sizeof(hdr), BPF_F_RECOMPUTE_CSUM) < 0)
		return BROKEN;
	if (partial && full_checksum(skb, p->l4, back->server_ip, back->client_ip, new_udp_len,
				     p->v6) < 0)
		return BROKEN;
	count(back->slot, 0, payload);
	return deliver(where);
}

SEC("classifier")
int turn_relay(struct __sk_buff *skb)
{
	struct pkt p = {};
	if (parse(skb, &p) < 0)
		return TC_ACT_UNSPEC;
	int rc = to_peer(skb, &p);
	if (rc != TC_ACT_UNSPEC)
		return rc;
	return from_peer(skb, &p);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
