#!/bin/sh
# A Mesos agent (and the master, which runs tasks too in the walkthrough): ovn-mesos-plugin and
# its network configuration where the agent's CNI isolator looks for them
# (--network_cni_plugins_dir, --network_cni_config_dir). Run after
# ../../provisioning/setup-common.sh.
#
# Parameters (environment):
#   MESOS_CNI_PLUGINS_DIR  optional, default /var/lib/mesos/cni/plugins
#   MESOS_CNI_CONFIG_DIR   optional, default /var/lib/mesos/cni/config
set -eu
ovn-mesos-init plugin-install \
    --plugin-dir "${MESOS_CNI_PLUGINS_DIR:-/var/lib/mesos/cni/plugins}" \
    --config-dir "${MESOS_CNI_CONFIG_DIR:-/var/lib/mesos/cni/config}"
