"""The CNI plugin `ovn-k8s-cni-overlay`, split into small, separately testable layers.

- `protocol`: CNI wire protocol (env + stdin -> `CniRequest`; results, errors, VERSION -> stdout JSON;
  `run()` as the plugin's main). Pure: no I/O besides what `run()` is handed.
- `netns`: the pod's veth pair and its configuration inside the pod network namespace, over netlink.

The plugin runs once per pod ADD/DEL/CHECK, so nothing under `ovn_k8s.cni` may import `kubernetes`,
`ovsdbapp`, `requests` or `yaml` (style-and-architecture.md V11: ~0.5 s of imports per call).
This package's `__init__` imports nothing on purpose.
"""
