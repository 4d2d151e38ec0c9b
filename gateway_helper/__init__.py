"""gateway_helper."""
