"""ovn_k8s."""
__version__ = "0.1.0"
