"""Pure builders: configuration and Kubernetes objects in, desired NB rows out (no I/O)."""
