"""OVN for Docker: the libnetwork remote network and IPAM driver (`ovn-docker-driver`), and
the tools `ovn-integrate` and `ovn-container`. The NB is the source of truth (`nbstore`)."""
