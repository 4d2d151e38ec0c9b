#!/bin/sh
# A Kubernetes node (docs/install.md step 4): minion-init, which also installs the CNI
# configuration and plugin (into /etc/cni/net.d and /opt/cni/bin, or OVN_K8S_CNI_CONF_DIR and
# OVN_K8S_CNI_BIN_DIR). Run after ../../provisioning/setup-common.sh (with API_SERVER set).
#
# Parameters (environment): NODE_NAME, CLUSTER_SUBNET, NODE_SUBNET; SERVICE_RANGE optional
set -eu
: "${NODE_NAME:?}" "${CLUSTER_SUBNET:?}" "${NODE_SUBNET:?}"

ovn-k8s-overlay minion-init --node-name "$NODE_NAME" --cluster-ip-subnet "$CLUSTER_SUBNET" \
    --minion-switch-subnet "$NODE_SUBNET" ${SERVICE_RANGE:+--service-cluster-ip-range "$SERVICE_RANGE"}
