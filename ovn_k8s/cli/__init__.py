"""Command-line entry points (bin/ wraps these): argparse front ends only. They parse flags and
call the library (ovn_k8s.overlay, ovn_k8s.mesos, ovn_k8s.nic_bridge) through ovn_k8s.process's
one-line error exit; nothing outside cli/ and bin/ imports them."""
