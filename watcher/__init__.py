"""ovn-k8s-watcher, the master daemon: pods and services into the OVN Northbound database.

`daemon` (entry point, life cycle, NB lock), `informer` (watch threads), `pods` (pod
controller), `pod_nb` (pod ports in the NB), `ipalloc` (pod addresses), `annotator` (the
annotation PATCH transport), `service_controller` (stores and worker around `services`, the
NB side of services), `events`, `metrics`; `harness` is for tests and the benchmark.
See docs/watcher.md.
"""
