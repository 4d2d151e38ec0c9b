"""ovn-k8s: an OVN overlay network controller for container clusters."""
from setuptools import find_packages, setup

setup(
    name="ovn-k8s",
    version="0.1.0",
    description="OVN overlay networking for Kubernetes (and Mesos, Docker): topology, watcher, CNI",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    # ovn_k8s (the runtime library), the two daemons, and the sandbox (the one-machine cluster
    # with its lab and embedded API server). The runtime never imports the sandbox
    # (tests/unit/test_architecture.py), so a node can run without it.
    packages=find_packages(include=["ovn_k8s", "ovn_k8s.*", "watcher", "watcher.*",
                                    "gateway_helper", "gateway_helper.*", "sandbox", "sandbox.*"]),
    # bin/ is the single source of executables (thin wrappers around ovn_k8s.cli.*, watcher, gateway_helper, sandbox).
    scripts=[
        "bin/ovn-k8s-overlay",
        "bin/ovn-k8s-util",
        "bin/ovn-k8s-lab",
        "bin/ovn-k8s-watcher",
        "bin/ovn-mesos-plugin",
        "bin/ovn-mesos-init",
        "bin/ovn-k8s-cni-overlay",
        "bin/ovn-k8s-gateway-helper",
        "bin/ovn-k8s-sandbox",
        "bin/ovn-docker-driver",
        "bin/ovn-integrate",
        "bin/ovn-container",
    ],
    # Pins: what a library-internal use was measured and contract-tested with
    # (tests/unit/test_library_contracts.py). python-ovs is Debian's python3-openvswitch (3.1,
    # with its C JSON parser) or PyPI's `ovs`; both pass the suite.
    install_requires=[
        "ovs>=3.1,<4.1",
        "ovsdbapp>=3.0,<3.1",
        "requests>=2.28",
        "netaddr>=0.8",
        "pyyaml>=6.0",
        "tenacity>=8.0",
        "pyroute2==0.9.7",  # ovn_k8s.netlink._pyroute2 was measured with it (tests/unit/test_host_access.py)
        # The official client's kubeconfig loader runs exec plugins and auth providers
        # (ovn_k8s.kube.credentials, imported only for such kubeconfigs); requests go
        # through ovn_k8s.kube.
        "kubernetes>=28.0",
    ],
    extras_require={
        "test": ["pytest>=7.0", "pytest-timeout>=2.1", "pytest-xdist>=3.0", "ruff>=0.4"],
    },
)
