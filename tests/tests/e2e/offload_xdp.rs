//! The kernel fast path at XDP (`--offload xdp`) through the built relay: the checks offload.rs
//! makes of `--offload tc`, each relay in a network namespace of its own, since an interface
//! takes one XDP program and the other tests' relays share the host's lo. Both directions over
//! IPv4 and IPv6 on lo (generic XDP, where local senders leave checksums PARTIAL) with the
//! receivers counting no checksum errors; across veths with forwarding off (native XDP, the
//! next hops' MACs from the neighbour table); a permission's expiry withdrawing the route; and
//! SIGKILL leaving no XDP program attached. Needs root, as CI runs.
#![allow(clippy::unwrap_used)]

use super::offload::{
    permission_expiry_stops_kernel_relaying, relay_to_relay_calls, relays_in_the_kernel, relays_over_veth, Place,
};

#[test]
fn channel_data_is_relayed_at_xdp_both_ways_and_counted_ipv4() {
    relays_in_the_kernel(&Place::own(), "xdp", "127.0.0.1", "offload_xdp_v4");
}

#[test]
fn channel_data_is_relayed_at_xdp_both_ways_and_counted_ipv6() {
    relays_in_the_kernel(&Place::own(), "xdp", "::1", "offload_xdp_v6");
}

#[test]
fn relays_at_xdp_between_namespaces_over_veth_without_forwarding() {
    relays_over_veth("xdp");
}

#[test]
fn relay_to_relay_calls_are_relayed_at_xdp() {
    relay_to_relay_calls("xdp");
}

#[test]
fn permission_expiry_stops_xdp_relaying() {
    permission_expiry_stops_kernel_relaying(&Place::own(), "xdp", "offload_xdp_permission");
}

#[test]
fn sigkill_leaves_no_xdp_program_attached() {
    let place = Place::own();
    let Place::Own(ns) = &place else { unreachable!() };
    let on_lo = || ns.exec("ip", &["-d", "-o", "link", "show", "dev", "lo"]).contains("prog/xdp");
    super::offload::sigkill_leaves_nothing_relaying(&place, "xdp", "offload_xdp_sigkill", |want| {
        assert_eq!(on_lo(), want, "an XDP program on lo: `ip -d link show dev lo` in {}", ns.name());
    });
}
