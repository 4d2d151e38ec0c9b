"""ovn-k8s-sandbox: a whole Kubernetes-style cluster on one machine, on real OVN.

  up [--nodes N]        start it (idempotent)          status   what runs where
  apply -f FILE         create/update objects          delete -f FILE | delete KIND NAME
  demo [--keep]         up, deploy, check with real packets, down (unless --keep)
  kubectl ARGS...       kubectl (the assets') with the sandbox's kubeconfig
  import-image TAR      load an image tarball into every real node's containerd
  down                  remove everything it made (also after a crash)

  up and demo take --control-plane real|embedded: real is etcd + kube-apiserver +
  kube-controller-manager + kube-scheduler from the envtest assets ($KUBEBUILDER_ASSETS or
  <repo>/.k8s-assets), the default when they are found; embedded is the project's own API server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

from sandbox import cluster
from sandbox.state import DEFAULT_DIR, ENV_DIR, state_dir


def cmd_up(args: argparse.Namespace) -> int:
    cluster.up(args.dir, nodes=args.nodes, control_plane=args.control_plane, db_cluster=args.db_cluster,
               nodes_kind=args.nodes_kind)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster.down(args.dir)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return cluster.status(args.dir)


def cmd_apply(args: argparse.Namespace) -> int:
    from sandbox import manifests

    return manifests.apply_files(args.dir, args.filename, wait=args.wait)


def cmd_delete(args: argparse.Namespace) -> int:
    from sandbox import manifests

    if args.filename:
        return manifests.delete_files(args.dir, args.filename)
    if len(args.target) != 2:
        print("ovn-k8s-sandbox: delete needs -f FILE or KIND NAME", file=sys.stderr)
        return 2
    return manifests.delete_named(args.dir, args.target[0], args.target[1], args.namespace)


def cmd_demo(args: argparse.Namespace) -> int:
    from sandbox import demo

    return demo.main(args.dir, nodes=args.nodes, keep=args.keep, control_plane=args.control_plane,
                     nodes_kind=args.nodes_kind)


def cmd_import_image(args: argparse.Namespace) -> int:
    from sandbox import realnode
    from sandbox.state import State

    state = State.load(args.dir)
    if state is None or not state.real_nodes:
        print(f"ovn-k8s-sandbox: no sandbox with real nodes in {args.dir} (ovn-k8s-sandbox up --nodes-kind real)",
              file=sys.stderr)
        return 1
    for tarball in args.tarball:
        try:
            for line in realnode.import_image(state, tarball, args.node):
                print(line)
        except RuntimeError as exc:
            print(f"ovn-k8s-sandbox: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_kubectl(args: argparse.Namespace) -> int:
    from sandbox import real_control_plane

    if not os.path.exists(f"{args.dir}/kubeconfig"):
        print(f"ovn-k8s-sandbox: no sandbox in {args.dir} (start one with: ovn-k8s-sandbox up)", file=sys.stderr)
        return 1
    kubectl = real_control_plane.kubectl() or shutil.which("kubectl")
    if kubectl is None:
        print("ovn-k8s-sandbox: no kubectl: none in the assets ($KUBEBUILDER_ASSETS, .k8s-assets) or PATH",
              file=sys.stderr)
        return 1
    os.execv(kubectl, [kubectl, f"--kubeconfig={args.dir}/kubeconfig", *args.args])
    return 1   # not reached


def _control_plane_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--control-plane", choices=cluster.CONTROL_PLANES,
                   help="real (etcd, kube-apiserver, kube-controller-manager, kube-scheduler; the default when "
                        "their assets are found) or embedded (the project's API server); a running sandbox "
                        "on the other one is rebuilt")


def _nodes_kind_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes-kind", choices=cluster.NODES_KINDS,
                   help="real (containerd + the kubelet in each node's namespace, pods as containers; the "
                        "default with the real control plane when the kubelet, containerd and runc are found) "
                        "or agent (the sandbox's kubelet-like agent)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovn-k8s-sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", dest="dir_opt", metavar="DIR",
                        help=f"where the sandbox keeps its state (default: ${ENV_DIR} or {DEFAULT_DIR})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("up", help="start the sandbox (does nothing if it already runs)")
    p.add_argument("--nodes", type=int, help="number of nodes (default 2; a running sandbox with "
                                              "another number is rebuilt)")
    _control_plane_flag(p)
    _nodes_kind_flag(p)
    p.add_argument("--db-cluster", type=int, metavar="N",
                   help="run the NB and SB as RAFT clusters of N members (3 is usual; 0: one server each, the "
                        "default); every component is given all N (docs/ha.md)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="remove every namespace, link, daemon and file of the sandbox")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", help="nodes, pods, services and daemons")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("apply", help="create or update Pods, Deployments (replicas), Services, Namespaces")
    p.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                   help="YAML or JSON file ('-' for stdin); may be repeated")
    p.add_argument("--wait", action="store_true", help="wait until the pods are Ready")
    p.set_defaults(func=cmd_apply)
    p = sub.add_parser("delete", help="delete the objects of a file, or KIND NAME")
    p.add_argument("-f", "--filename", action="append", metavar="FILE")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("target", nargs="*", metavar="KIND NAME")
    p.set_defaults(func=cmd_delete)
    p = sub.add_parser("demo", help="bring the sandbox up, deploy two pods and a service, check "
                                    "traffic with PASS/FAIL marks")
    p.add_argument("--nodes", type=int, help="number of nodes (default 2, or the running sandbox's)")
    p.add_argument("--keep", action="store_true", help="leave the sandbox up afterwards")
    _control_plane_flag(p)
    _nodes_kind_flag(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("import-image", help="import image tarballs (docker save, OCI archive) into the real "
                                            "nodes' containerd (use them with imagePullPolicy: Never)")
    p.add_argument("tarball", nargs="+", metavar="TARBALL")
    p.add_argument("--node", action="append", help="only this node (may be repeated; default: every node)")
    p.set_defaults(func=cmd_import_image)
    p = sub.add_parser("kubectl", help="run kubectl (the assets', else PATH's) with the sandbox's kubeconfig",
                       prefix_chars="\0")   # every argument is kubectl's, flags included
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    p.set_defaults(func=cmd_kubectl)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.dir = state_dir(args.dir_opt)
    if os.geteuid() != 0:
        print("ovn-k8s-sandbox: must run as root (network namespaces, OVS daemons)", file=sys.stderr)
        return 1
    try:
        return int(args.func(args))
    except cluster.SandboxError as exc:
        print(f"ovn-k8s-sandbox: {exc}", file=sys.stderr)
        return 1
