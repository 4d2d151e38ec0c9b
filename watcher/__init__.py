"""ovn-k8s-watcher, the master daemon: pods and services into the OVN Northbound database.

`daemon` (entry point, life cycle, NB lock), `informer` (watch threads), `pods` (pod
controller), `ipalloc` (pod addresses), `annotator` (the annotation PATCH transport),
`service_controller` (stores and worker around `services`, which parses and builds the load
balancers), `events`, `metrics`. Every NB read and write goes through the NB engine's keyed
mode, `ovn_k8s.nb.keyed`; the test and benchmark harness is `sandbox.watcher_harness`.
See docs/watcher.md.
"""
