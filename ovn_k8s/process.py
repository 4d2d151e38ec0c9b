"""Process start-up shared by the commands (ovn-k8s-overlay, ovn-mesos-init, ovn-k8s-util) and
the daemons (the watcher, the gateway helper): the global flags, logging, the NB connection
from resolved settings, and the one-line error exit.

It lives below the front ends (`ovn_k8s/cli/`, `watcher/daemon.py`, `gateway_helper/daemon.py`)
so that a daemon never imports a command's package. The daemons' own process side (pidfile,
--detach, vlog, ovs-appctl, SIGTERM) is `ovn_k8s/ovs_daemon.py`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ovn_k8s import config
from ovn_k8s.errors import ConfigError, OvnK8sError
from ovn_k8s.nb import connection

LOG = logging.getLogger(__name__)

NB_OPTIONS = ("ovn_nb", "nb_privkey", "nb_cert", "nb_cacert")
GLOBAL_OPTIONS = (*NB_OPTIONS, "ovs_db", "timeout", "log_level", "log_file")

# The settings as the user gave them, for config.resolve: the command line's namespace, or a
# mapping (a CNI plugin's network configuration).
Given = argparse.Namespace | Mapping[str, Any]


def option_parent(names: Sequence[str], *, suppress_defaults: bool = False,
                  title: str = "global options") -> argparse.ArgumentParser:
    """An argparse parent with --config and the named options' flags.

    `suppress_defaults`: the flags set nothing unless given, so that the same flags can sit on
    the main parser and on each subcommand (`ovn-nbctl --db=... ls-add` style: shared flags
    before or after the subcommand) without a subcommand's unset flags erasing the ones given
    before it. `fill_defaults` then sets the rest to None."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(title)
    config.add_config_flag(group)  # type: ignore[arg-type]
    config.add_options(group, names)  # type: ignore[arg-type]
    if suppress_defaults:
        for action in parent._actions:
            action.default = argparse.SUPPRESS
    return parent


def global_parent(extra: Sequence[str] = (), *, without: Sequence[str] = (),
                  suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """`option_parent` of the global flags, plus `extra`, minus `without`."""
    return option_parent([n for n in (*GLOBAL_OPTIONS, *extra) if n not in without],
                         suppress_defaults=suppress_defaults)


def shared_flags_anywhere(parser: argparse.ArgumentParser,
                          names: Sequence[str] = GLOBAL_OPTIONS) -> None:
    """Accept --config and the `names` flags before the subcommand too. The subcommands must
    take them from `option_parent(..., suppress_defaults=True)`; call `fill_defaults` after
    parsing."""
    parent = option_parent(names, suppress_defaults=True)
    group = parser.add_argument_group("global options (before or after the command)")
    for action in parent._actions:
        group._add_action(action)


def fill_defaults(args: argparse.Namespace, names: Sequence[str] = GLOBAL_OPTIONS
                  ) -> argparse.Namespace:
    """--config and every named option given nowhere: None ('unset', for config.resolve)."""
    for name in ("config", *names):
        if not hasattr(args, name):
            setattr(args, name, None)
    return args


def setup_logging(level: str | None, log_file: str | None) -> None:
    numeric = getattr(logging, (level or "warning").upper(), None)
    if not isinstance(numeric, int):
        raise ConfigError(f"--log-level: {level!r} is not one of debug, info, warning, error")
    try:
        handler: logging.Handler = (logging.FileHandler(log_file) if log_file
                                    else logging.StreamHandler(sys.stderr))
    except OSError as e:
        raise ConfigError(f"--log-file: {log_file}: {e.strerror or e}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # python-ovs reports every reconnect attempt; our own error line already says what failed.
    logging.getLogger("ovsdbapp").setLevel(numeric if numeric <= logging.INFO else logging.ERROR)


def tls_files(cfg: config.Config) -> connection.TlsFiles:
    return connection.TlsFiles(privkey=cfg.nb_privkey, cert=cfg.nb_cert, cacert=cfg.nb_cacert)


def connect_nb(cfg: config.Config) -> Any:
    """The NB named by the resolved NB_OPTIONS and `timeout`; a ConfigError if none is set."""
    if not cfg.ovn_nb:
        raise ConfigError("OVN central database's address not set: pass --ovn-nb, set "
                          f"{config.OPTIONS['ovn_nb'].env}, or set external_ids:ovn-nb in the "
                          "local OVS")
    return connection.connect(cfg.ovn_nb, "OVN_Northbound", what="OVN NB database",
                              timeout=cfg.timeout, tls=tls_files(cfg))


def run(prog: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace, *,
        logging_setup: bool = True) -> int:
    """Run a command; an OvnK8sError becomes one line on stderr and exit status 1.
    `logging_setup=False`: the daemons set up ovs.vlog themselves (ovn_k8s.ovs_daemon)."""
    try:
        if logging_setup:
            setup_logging(getattr(args, "log_level", None) or _env_level(),
                          getattr(args, "log_file", None))
        return func(args)
    except OvnK8sError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _env_level() -> str | None:
    return os.environ.get(config.OPTIONS["log_level"].env)
