#!/bin/sh
# VM only (CI uses its in-process API server instead and never runs this script): a small
# Kubernetes for the walkthrough, from the upstream release binaries.
#   ROLE=master  etcd, kube-apiserver (TLS with a CA made here, a static bearer token),
#                kube-controller-manager and kube-scheduler; the CA is left in $STATE_DIR
#   ROLE=node    containerd and kubelet (network plugin: the CNI configuration minion-init
#                installs in /etc/cni/net.d); no kube-proxy: services are OVN load balancers
#
# Parameters (environment): ROLE, NODE_NAME, NODE_IP (the address the cluster sees),
# API_IP (the master's), API_TOKEN, SERVICE_RANGE; optional KUBE_VERSION (v1.29.4),
# ETCD_VERSION (v3.5.13), STATE_DIR (/vagrant/.state, shared by the VMs)
set -eu
: "${ROLE:?}" "${NODE_NAME:?}" "${NODE_IP:?}" "${API_IP:?}" "${API_TOKEN:?}" "${SERVICE_RANGE:?}"
KUBE_VERSION="${KUBE_VERSION:-v1.29.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.13}"
STATE_DIR="${STATE_DIR:-/vagrant/.state}"
K=/etc/kubernetes
mkdir -p "$K" "$STATE_DIR" /var/lib/kubelet
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q curl openssl

fetch() {  # fetch NAME...: the release binaries into /usr/local/bin
    for b in "$@"; do
        [ -x "/usr/local/bin/$b" ] || curl -fsSLo "/usr/local/bin/$b" \
            "https://dl.k8s.io/release/$KUBE_VERSION/bin/linux/amd64/$b"
        chmod +x "/usr/local/bin/$b"
    done
}
unit() {  # unit NAME COMMAND...: a transient systemd unit, restarted on failure
    systemctl stop "$1" 2>/dev/null || true
    systemctl reset-failed "$1" 2>/dev/null || true
    name=$1; shift
    systemd-run --unit="$name" -p Restart=always "$@"
}
kubeconfig() {  # kubeconfig FILE: the API server with the CA and the token
    cat > "$1" <<EOT
apiVersion: v1
kind: Config
clusters: [{name: vagrant, cluster: {server: "https://$API_IP:6443", certificate-authority: $STATE_DIR/ca.crt}}]
users: [{name: admin, user: {token: "$API_TOKEN"}}]
contexts: [{name: vagrant, context: {cluster: vagrant, user: admin}}]
current-context: vagrant
EOT
}

if [ "$ROLE" = master ]; then
    fetch kube-apiserver kube-controller-manager kube-scheduler kubectl
    if [ ! -x /usr/local/bin/etcd ]; then
        curl -fsSL "https://github.com/etcd-io/etcd/releases/download/$ETCD_VERSION/etcd-$ETCD_VERSION-linux-amd64.tar.gz" \
            | tar -xz -C /usr/local/bin --strip-components=1 "etcd-$ETCD_VERSION-linux-amd64/etcd"
    fi
    if [ ! -e "$STATE_DIR/ca.crt" ]; then
        svc_ip=$(python3 -c "import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1])[1])" "$SERVICE_RANGE")
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=vagrant-ca \
            -keyout "$K/ca.key" -out "$STATE_DIR/ca.crt"
        openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "$K/apiserver.key" -out "$K/apiserver.csr"
        printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default\n' \
            "$API_IP" "$svc_ip" > "$K/san.ext"
        openssl x509 -req -in "$K/apiserver.csr" -CA "$STATE_DIR/ca.crt" -CAkey "$K/ca.key" \
            -CAcreateserial -days 3650 -extfile "$K/san.ext" -out "$K/apiserver.crt"
        openssl genrsa -out "$K/sa.key" 2048
    fi
    echo "$API_TOKEN,admin,admin,system:masters" > "$K/tokens.csv"
    kubeconfig "$K/admin.conf"
    unit etcd /usr/local/bin/etcd --data-dir=/var/lib/etcd --listen-client-urls=http://127.0.0.1:2379 \
        --advertise-client-urls=http://127.0.0.1:2379
    unit kube-apiserver /usr/local/bin/kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
        --advertise-address="$API_IP" --bind-address="$API_IP" --secure-port=6443 \
        --tls-cert-file="$K/apiserver.crt" --tls-private-key-file="$K/apiserver.key" \
        --client-ca-file="$STATE_DIR/ca.crt" --token-auth-file="$K/tokens.csv" \
        --authorization-mode=Node,RBAC --service-cluster-ip-range="$SERVICE_RANGE" \
        --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$K/sa.key" \
        --service-account-signing-key-file="$K/sa.key"
    unit kube-controller-manager /usr/local/bin/kube-controller-manager --kubeconfig="$K/admin.conf" \
        --service-account-private-key-file="$K/sa.key" --root-ca-file="$STATE_DIR/ca.crt" \
        --service-cluster-ip-range="$SERVICE_RANGE" --allocate-node-cidrs=false --use-service-account-credentials
    unit kube-scheduler /usr/local/bin/kube-scheduler --kubeconfig="$K/admin.conf"
    # the API server answers before the watcher starts
    for _ in $(seq 60); do
        kubectl --kubeconfig="$K/admin.conf" get --raw=/readyz >/dev/null 2>&1 && break
        sleep 2
    done
    kubectl --kubeconfig="$K/admin.conf" get --raw=/readyz
else
    fetch kubelet
    apt-get install -y -q containerd containernetworking-plugins
    mkdir -p /opt/cni/bin    # containerd wants loopback next to our plugin
    ln -sf /usr/lib/cni/loopback /opt/cni/bin/loopback
    systemctl enable --now containerd
    kubeconfig "$K/kubelet.conf"
    unit kubelet /usr/local/bin/kubelet --kubeconfig="$K/kubelet.conf" --hostname-override="$NODE_NAME" \
        --node-ip="$NODE_IP" --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
        --cgroup-driver=cgroupfs --fail-swap-on=false
fi
