"""The CNI plugin `ovn-k8s-cni-overlay`, split into small, separately testable layers.

- `protocol`: CNI wire protocol (env + stdin -> `CniRequest`; results, errors, VERSION -> stdout JSON;
  `run()` as the plugin's main). Pure: no I/O besides what `run()` is handed.
- `netns`: the pod's veth pair (made by `ovn_k8s.netlink`) as CNI sees it: names, error codes,
  the ADD result, CHECK.
- `ovsdb`: the pod's port on the integration bridge and the wait for OVN's binding
  (`ovn_k8s.local_ovsdb` in its pod-ports mode), with their CNI error codes.
- `kubeapi`: where the API server is, the pod's `ovn` annotation and ADD's wait for it.
- `plugin`: ADD, DEL and CHECK on top of those, and the executable's `main`.

The plugin runs once per pod ADD/DEL/CHECK, so nothing under `ovn_k8s.cni` may import `kubernetes`
or `ovsdbapp` (style-and-architecture.md V11: ~0.5 s of imports per call), and importing any of
these modules loads neither `requests`, `yaml` nor `pyroute2`: ADD loads the socket
transport `ovn_k8s.kube.lite` when it asks for the annotation (`requests` only for a proxy),
`yaml` only for a kubeconfig, and pyroute2 never (the pod pair is `ovn_k8s.netlink_raw`'s).
tests/unit/test_cni_protocol.py checks both rules.
This package's `__init__` imports nothing on purpose.
"""
