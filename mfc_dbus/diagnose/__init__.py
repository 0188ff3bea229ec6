"""`mfc-dbus diagnose`: the rules that explain why a group does not forward.

`counters` reads the service's counters; `firewall`, `mrules` and `links` read the
host the command runs on (nftables/iptables rule sets, multicast routing rules,
interface flags), gathered by `host`.
"""
