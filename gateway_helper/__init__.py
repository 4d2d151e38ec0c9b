"""ovn-k8s-gateway-helper: one NIC shared by the host and the gateway router.

- `services`: raw Service -> ServicePorts (pure)
- `flows`: services + local inputs -> the bridge's flow specs (pure)
- `apply`: one atomic `ovs-ofctl --bundle add-flows` per change
- `inputs`: ofports from the local OVS, the host's address from netlink
- `metrics`: /metrics and /healthz
- `daemon`: the command line and the loop

Imports ovn_k8s, never watcher (and ovn_k8s never imports this package).
"""
