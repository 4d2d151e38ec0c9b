"""A real OVN cluster on one machine: central daemons, nodes and pods in network namespaces.

Used by the test suite, the README demo and (later) the sandbox. Userspace datapath
(datapath_type=netdev), so no kernel module is needed; see docs/testing.md for the layout.
"""
