#!/bin/sh
# Run INSIDE the system-test container, in its own network namespace, which is the
# router (mfc-dbus.service has no PrivateNetwork=, so it programs this namespace):
#
#   netns src: eth0 ── up0 :router: down0 ── eth0 :netns dst
#
# Addresses from the documentation ranges (RFC 5737, RFC 3849). Extra sender
# addresses for new (*,G) sources are added by the test. Once per boot: /run is tmpfs.
set -eu
ip link set lo up
for ns in src dst; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip link add up0 type veth peer name eth0 netns src
ip link add down0 type veth peer name eth0 netns dst
ip link set up0 up
ip link set down0 up
ip -n src link set eth0 up
ip -n dst link set eth0 up
ip addr add 192.0.2.254/24 dev up0
ip addr add 2001:db8:1::fe/64 dev up0 nodad
ip addr add 198.51.100.254/24 dev down0
ip addr add 2001:db8:2::fe/64 dev down0 nodad
ip -n src addr add 192.0.2.1/24 dev eth0
ip -n src addr add 2001:db8:1::1/64 dev eth0 nodad
ip -n dst addr add 198.51.100.1/24 dev eth0
ip -n dst addr add 2001:db8:2::1/64 dev eth0 nodad
ip -n src route add default via 192.0.2.254
ip -n src -6 route add default via 2001:db8:1::fe
ip -n dst route add default via 198.51.100.254
ip -n dst -6 route add default via 2001:db8:2::fe
# Sources have a route back through up0, but be explicit: no reverse-path drops.
sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.up0.rp_filter=0
