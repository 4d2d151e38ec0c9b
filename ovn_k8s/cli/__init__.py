"""Command-line entry points (bin/ wraps these)."""
