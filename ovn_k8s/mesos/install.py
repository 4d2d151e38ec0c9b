"""ovn-mesos-init plugin-install: link ovn-mesos-plugin into the Mesos agent's CNI plugin
directory and write the network configuration the agent loads (--network_cni_plugins_dir /
--network_cni_config_dir; DC/OS has its own two). Both steps are atomic renames and leave an
unchanged file alone, so a re-run changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any

from ovn_k8s.errors import ConfigError, HostError

PLUGIN = "ovn-mesos-plugin"
PLUGIN_CONF = "10-ovn.conf"
MESOS_DIRS = ("/var/lib/mesos/cni/plugins", "/var/lib/mesos/cni/config")
DCOS_DIRS = ("/opt/mesosphere/active/cni", "/opt/mesosphere/etc/dcos/network/cni")
# Mesos' CNI isolator parses results in the 0.2.0 shape ("ip4"), so that is what we install.
DEFAULT_PLUGIN_CNI_VERSION = "0.2.0"
PLUGIN_CNI_VERSIONS = ("0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")


@dataclass(frozen=True, slots=True)
class PluginInstall:
    dcos: bool = False                 # the DC/OS directories instead of Mesos' defaults
    plugin_dir: str | None = None
    config_dir: str | None = None
    plugin: str | None = None          # the executable (default: from PATH, or next to python)
    network_name: str = "ovn"
    cni_version: str = DEFAULT_PLUGIN_CNI_VERSION
    mtu: int | None = None
    ovs_db: str | None = None
    ovn_nb: str | None = None


@dataclass(frozen=True, slots=True)
class Installed:
    link: str      # the plugin's link in the agent's plugin directory
    target: str    # what it points to
    config: str    # the network configuration file


def install_plugin(spec: PluginInstall) -> Installed:
    plugin_default, conf_default = DCOS_DIRS if spec.dcos else MESOS_DIRS
    plugin_dir = spec.plugin_dir or plugin_default
    conf_dir = spec.config_dir or conf_default
    source = spec.plugin or shutil.which(PLUGIN) or os.path.join(os.path.dirname(sys.executable), PLUGIN)
    if not os.path.isfile(source) or not os.access(source, os.X_OK):
        raise ConfigError(f"{PLUGIN} not found at {source}: install ovn-k8s, or pass --plugin PATH")
    if spec.mtu is not None and not 68 <= spec.mtu <= 65535:
        raise ConfigError(f"--mtu {spec.mtu} is not in [68, 65535]")
    conf: dict[str, Any] = {"cniVersion": spec.cni_version, "name": spec.network_name,
                            "type": PLUGIN}
    if spec.mtu is not None:
        conf["mtu"] = spec.mtu
    if spec.ovs_db:
        conf["ovs_db"] = spec.ovs_db
    if spec.ovn_nb:
        conf["ovn_nb"] = spec.ovn_nb
    try:
        os.makedirs(plugin_dir, exist_ok=True)
        link = os.path.join(plugin_dir, PLUGIN)
        target = os.path.realpath(source)
        if not (os.path.islink(link) and os.path.realpath(link) == target):
            tmp = link + ".tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, link)
        os.makedirs(conf_dir, exist_ok=True)
        path = os.path.join(conf_dir, PLUGIN_CONF)
        text = json.dumps(conf, indent=2, sort_keys=True) + "\n"
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
    except OSError as e:
        raise HostError(f"cannot install the plugin: {e.strerror or e}: {e.filename or ''}") from None
    return Installed(link=link, target=target, config=path)
