"""Kubernetes client layer: the only package that talks to the API server.

- `rest`: KubeClient over requests (raw dicts; CNI-safe imports, V11)
- `auth`: ConnectionParams from a kubeconfig, the service account, or OVS-style values
- `watch`: list_then_watch, our own list/watch loop (V9)
- `workqueue`: keyed, de-duplicating, rate-limited work queue
- `errors`: the exceptions all of them raise

Nothing is imported here, so `import ovn_k8s.kube.rest` stays light.
"""
