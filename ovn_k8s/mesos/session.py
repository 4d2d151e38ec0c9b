"""One ovn-mesos-init run's connections: the local OVS, opened only when needed (NB-only commands
run anywhere with --ovn-nb), and the NB, one `ScopedApplyCommand` in one transaction per
`apply`.

Settings are resolved as every command resolves them (ovn_k8s/config.py: flag > environment >
config file > the local OVS' external_ids > default) from `given`, what the user passed: the
command line's namespace, or a mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from types import TracebackType

from ovn_k8s import config, process
from ovn_k8s.errors import ConnectionFailed
from ovn_k8s.local_ovsdb import LocalOvsdb
from ovn_k8s.mesos import nbview
from ovn_k8s.nb import connection
from ovn_k8s.nb.apply import NbView, ScopedApplyCommand
from ovn_k8s.nb.model import Row
from ovn_k8s.nb.plan import Plan

LOG = logging.getLogger(__name__)

# In the transaction: the rows to write and the extra scopes to take over (and so delete).
Build = Callable[[NbView], tuple[list[Row], Iterable[str]]]


class Session:
    """The local OVS and the NB of one command; close() (or `with`) releases both."""

    def __init__(self, given: process.Given) -> None:
        self.given = given
        self._local: config.Config | None = None
        self._ovs: LocalOvsdb | None = None

    def resolve(self, names: Iterable[str]) -> config.Config:
        """Options that do not come from the local OVS (flag, environment, file, default)."""
        return config.resolve(self.given, names)

    def _local_settings(self) -> config.Config:
        if self._local is None:
            self._local = self.resolve(("ovs_db", "timeout"))
        return self._local

    @property
    def ovs_remote(self) -> str:
        return str(self._local_settings().ovs_db)

    @property
    def timeout(self) -> float:
        return float(self._local_settings().timeout)

    def ovs(self) -> LocalOvsdb:
        if self._ovs is None:
            self._ovs = LocalOvsdb(self.ovs_remote, timeout=self.timeout)
        return self._ovs

    def _external_ids_or_none(self) -> dict[str, str]:
        """For the config layer: a missing local OVS just means no OVS-provided settings."""
        try:
            return self.ovs().external_ids()
        except ConnectionFailed as e:
            LOG.info("no settings from the local OVS: %s", e)
            return {}

    def config(self) -> config.Config:
        """The global settings (the NB, its TLS files, logging), with logging set up by them."""
        cfg = config.resolve(self.given, process.GLOBAL_OPTIONS,
                             ovs_external_ids=self._external_ids_or_none)
        process.setup_logging(cfg.log_level, cfg.log_file)
        return cfg

    def apply(self, scopes: Iterable[str], build: Build) -> ScopedApplyCommand:
        """Connect to the NB, run one ScopedApplyCommand in one transaction, disconnect."""
        self._local_settings()
        cfg = self.config()
        nb = process.connect_nb(cfg)
        try:
            cmd = ScopedApplyCommand(nb, scopes=scopes, build=build, check=nbview.check_no_collisions)
            with connection.transaction(nb, timeout=cfg.timeout) as txn:
                txn.add(cmd)
        finally:
            connection.disconnect(nb)
        plan: Plan = cmd.result
        LOG.info("NB %s: %s", ",".join(sorted(cmd.scopes)), plan.summary() if plan else "no change")
        return cmd

    def close(self) -> None:
        if self._ovs is not None:
            self._ovs.close()
            self._ovs = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
