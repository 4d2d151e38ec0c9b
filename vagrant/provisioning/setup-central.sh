#!/bin/sh
# The central host (docs/install.md step 2, over TCP): the NB and SB databases and ovn-northd,
# listening for the nodes on CENTRAL_IP.
#
# Parameters (environment):
#   CENTRAL_IP     the address the databases listen on (6641 NB, 6642 SB)
#   SKIP_PACKAGES  1: ovn-central is installed and running already (CI): install nothing
# ovn-nbctl/ovn-sbctl reach the local databases at their default sockets, or at
# OVN_NB_DB/OVN_SB_DB when set.
set -eu
: "${CENTRAL_IP:?}"

if [ "${SKIP_PACKAGES:-0}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q ovn-central
    systemctl enable --now ovn-central
fi
# (only when not so already: set-connection replaces the rows, which a re-run need not do)
if ! ovn-nbctl --timeout=30 get-connection | grep -qE "(^| )ptcp:6641:$CENTRAL_IP$"; then
    ovn-nbctl --timeout=30 set-connection "ptcp:6641:$CENTRAL_IP"
fi
if ! ovn-sbctl --timeout=30 get-connection | grep -qE "(^| )ptcp:6642:$CENTRAL_IP$"; then
    ovn-sbctl --timeout=30 set-connection "ptcp:6642:$CENTRAL_IP"
fi
# both answer on TCP before the nodes are pointed at them
ovn-nbctl --db="tcp:$CENTRAL_IP:6641" --timeout=30 show >/dev/null
ovn-sbctl --db="tcp:$CENTRAL_IP:6642" --timeout=30 show >/dev/null
echo "central: NB tcp:$CENTRAL_IP:6641, SB tcp:$CENTRAL_IP:6642"
