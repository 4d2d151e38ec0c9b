"""ovn-k8s-sandbox: a whole cluster on one machine, on real OVN (see docs/sandbox.md)."""
