"""The lab: real network namespaces, veth pairs and multicast senders/receivers.

Used by the tests, the benchmarks and `make demo`. Everything it creates carries a
per-run suffix and is removed on exit, even after a failure.
"""

from .netns import Lab, Receiver, Sender, in_netns, netns_run

__all__ = ["Lab", "Receiver", "Sender", "in_netns", "netns_run"]
