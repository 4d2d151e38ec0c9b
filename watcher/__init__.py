"""ovn-k8s-watcher, the master daemon: pods and services into the OVN Northbound database.

`daemon` (entry point, life cycle), `informer` (watch threads), `pods` (pod controller),
`pod_nb` (pod ports in the NB), `ipalloc` (pod addresses), `events`, `metrics`.
"""
