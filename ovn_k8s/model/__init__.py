"""Small, typed views of the outside world (pure: no I/O, no ovsdbapp, no kubernetes).

`kube`: Kubernetes objects parsed from raw API JSON at the edge into frozen dataclasses.
"""
