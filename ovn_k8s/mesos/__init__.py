"""OVN for Mesos: tenants with overlapping networks (ovn-mesos-init) and the CNI plugin the
Mesos agent calls (ovn-mesos-plugin), on the same builders, NB apply and CNI plumbing as the
Kubernetes commands.

- `session`: one ovn-mesos-init run's local OVS and NB transactions
- `tenants`, `gateways`, `install`: what ovn-mesos-init's subcommands do (cli/mesos parses)
- `nbview`: what both read from the NB inside a transaction
- `plugin` (the process), `request` (parse and render, pure), `attach` (ADD, DEL, CHECK)
"""
