"""ovn-k8s-gateway-helper: one NIC shared by the host and the gateway router.

- `services`: raw Service -> ServicePorts (pure)
- `inputs`: ofports from the local OVS, the host's address from netlink
- `metrics`: /metrics and /healthz
- `daemon`: the command line and the loop

The flow table and its atomic replacement are `ovn_k8s.openflow`, shared with ovn-mesos-init's
shared-NIC gateways. Imports ovn_k8s, never watcher (and ovn_k8s never imports this package).
"""
