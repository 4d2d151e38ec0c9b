#!/bin/sh
# The Kubernetes master (docs/install.md steps 4 and 5): master-init, then the watcher.
# Run after ../../provisioning/setup-common.sh (with API_SERVER set).
#
# Parameters (environment):
#   NODE_NAME, CLUSTER_SUBNET (every pod), NODE_SUBNET (this node's pods)
#   SERVICE_RANGE  optional: kube-apiserver's --service-cluster-ip-range
#   DAEMONS        systemd (the units, docs/install.md step 5) or detach (the README's line,
#                  pid file and log in OVS_RUNDIR/OVS_LOGDIR); default systemd when packages
#                  were installed by setup-common.sh, detach with SKIP_PACKAGES=1
set -eu
: "${NODE_NAME:?}" "${CLUSTER_SUBNET:?}" "${NODE_SUBNET:?}"
if [ "${SKIP_PACKAGES:-0}" = 1 ]; then DAEMONS="${DAEMONS:-detach}"; else DAEMONS="${DAEMONS:-systemd}"; fi

ovn-k8s-overlay master-init --node-name "$NODE_NAME" --cluster-ip-subnet "$CLUSTER_SUBNET" \
    --master-switch-subnet "$NODE_SUBNET" ${SERVICE_RANGE:+--service-cluster-ip-range "$SERVICE_RANGE"}

if [ "$DAEMONS" = systemd ]; then
    systemctl enable ovn-k8s-watcher
    systemctl restart ovn-k8s-watcher
elif ! ovs-appctl -t ovn-k8s-watcher version >/dev/null 2>&1; then   # a re-run keeps the running one
    ovn-k8s-watcher --overlay --pidfile --log-file -vfile:info -vconsole:emer --detach
fi
ovs-appctl -t ovn-k8s-watcher status
