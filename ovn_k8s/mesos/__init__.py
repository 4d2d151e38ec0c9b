"""OVN for Mesos: tenants with overlapping networks (ovn-mesos-init) and the CNI plugin the
Mesos agent calls (ovn-mesos-plugin), on the same builders, NB apply and CNI plumbing as the
Kubernetes commands."""
