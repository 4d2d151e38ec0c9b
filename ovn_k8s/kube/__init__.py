"""Kubernetes client layer: the only package that talks to the API server.

- `params`: ConnectionParams (where the server is, how to authenticate), resource_path
- `rest`: KubeClient over requests (raw dicts; every verb)
- `lite`: LiteClient over plain sockets (get, watch, annotate) for the hot paths: the CNI
  plugin's ADD and the watcher's annotation PATCHes
- `auth`: ConnectionParams from a kubeconfig, the service account, or OVS-style values
- `watch`: list_then_watch, our own list/watch loop (V9)
- `workqueue`: keyed, de-duplicating, rate-limited work queue
- `errors`: the exceptions all of them raise

Nothing is imported here, so `import ovn_k8s.kube.lite` stays light.
"""
