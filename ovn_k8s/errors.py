"""Exception hierarchy shared by every ovn-k8s command and daemon.

Commands turn an `OvnK8sError` into one line on stderr and exit status 1; anything else is a
bug and keeps its traceback.
"""


class OvnK8sError(Exception):
    """A failure the user can act on; its message is one line that says what and why."""


class ConfigError(OvnK8sError):
    """Bad or inconsistent input: a flag, a config-file key, an OVS setting."""


class NotReadyError(OvnK8sError):
    """Something this step depends on is missing (e.g. master-init has not run yet)."""


class ConnectionFailed(OvnK8sError):
    """An OVSDB server (NB or the local OVS) could not be reached."""


class HostError(OvnK8sError):
    """A host-side step (interface, address, route, OVS port) failed."""


class InvalidObject(OvnK8sError):
    """A Kubernetes object that can never be turned into OVN rows; retrying will not help."""
