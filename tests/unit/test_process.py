"""ovn_k8s.process, the start-up every command and daemon shares: the global flags, the one-line
error exit, logging, the NB address check and stopping on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Iterator

import pytest

from ovn_k8s import config, process
from ovn_k8s.errors import ConfigError, HostError


@pytest.fixture(autouse=True)
def _restore_logging_and_signals() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_global_parent_carries_the_nb_ovs_tls_and_logging_flags_and_extras() -> None:
    parser = argparse.ArgumentParser(parents=[process.global_parent(("mtu",))])
    args = parser.parse_args(["--ovn-nb", "tcp:127.0.0.1:6641", "--nb-privkey", "k", "--nb-cert",
                              "c", "--nb-cacert", "ca", "--ovs-db", "unix:/x", "--timeout", "3",
                              "--log-level", "debug", "--log-file", "/tmp/l", "--config", "f",
                              "--mtu", "1300"])
    assert (args.ovn_nb, args.nb_privkey, args.nb_cert, args.nb_cacert) == ("tcp:127.0.0.1:6641", "k",
                                                                            "c", "ca")
    assert (args.ovs_db, args.log_level, args.log_file, args.config) == ("unix:/x", "debug", "/tmp/l", "f")
    assert args.timeout is not None and args.mtu is not None


def test_run_turns_our_errors_into_one_line_and_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise HostError("eth9 does not exist")

    assert process.run("ovn-k8s-x", fail, argparse.Namespace()) == 1
    assert capsys.readouterr().err == "ovn-k8s-x: error: eth9 does not exist\n"


def test_run_passes_the_status_through_and_says_interrupted(capsys: pytest.CaptureFixture[str]) -> None:
    assert process.run("p", lambda args: 3, argparse.Namespace()) == 3

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    assert process.run("p", interrupted, argparse.Namespace()) == 130
    assert capsys.readouterr().err == "p: interrupted\n"


def test_a_bad_log_level_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert process.run("p", lambda args: 0, argparse.Namespace(log_level="loud", log_file=None)) == 1
    assert capsys.readouterr().err == "p: error: --log-level: 'loud' is not one of debug, info, warning, error\n"


def test_setup_logging_writes_to_the_log_file_and_quiets_ovsdbapp(tmp_path) -> None:
    path = tmp_path / "x.log"
    process.setup_logging("warning", str(path))
    logging.getLogger("ovn_k8s.test").warning("seen %s", 1)
    logging.getLogger("ovn_k8s.test").info("not seen")
    assert logging.getLogger("ovsdbapp").level == logging.ERROR
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    assert "WARNING ovn_k8s.test: seen 1" in text and "not seen" not in text
    process.setup_logging("debug", str(path))
    assert logging.getLogger("ovsdbapp").level == logging.DEBUG


def test_connect_nb_without_an_address_says_where_to_set_it() -> None:
    cfg = config.resolve({}, (*process.NB_OPTIONS, "timeout"), env={})
    with pytest.raises(ConfigError, match="pass --ovn-nb, set OVN_K8S_OVN_NB, or set external_ids:ovn-nb"):
        process.connect_nb(cfg)


@pytest.mark.parametrize("before", [True, False])
def test_the_shared_flags_go_before_or_after_the_subcommand(before: bool) -> None:
    """`ovn-k8s-overlay --ovn-nb tcp:IP:6641 master-init ...`, as `ovn-nbctl --db=... ls-add`."""
    from ovn_k8s.cli import mesos, overlay, util

    shared = ["--ovn-nb", "tcp:192.0.2.1:6641", "--timeout", "7", "--config", "/dev/null"]
    cases = [
        (overlay, ["master-init", "--node-name", "m", "--cluster-ip-subnet", "10.0.0.0/16",
                   "--master-switch-subnet", "10.0.0.0/24"], (*process.GLOBAL_OPTIONS, *overlay.EXTRAS)),
        (mesos, ["tenant-init", "--tenant-name", "coke"], (*process.GLOBAL_OPTIONS, *mesos.EXTRAS)),
    ]
    for module, command, names in cases:
        argv = [*shared, *command] if before else [*command, *shared]
        args = process.fill_defaults(module.build_parser().parse_args(argv), names)
        assert (args.ovn_nb, args.timeout, args.config) == ("tcp:192.0.2.1:6641", "7", "/dev/null")
        assert args.log_file is None and args.nb_cacert is None     # unset: config decides
    # plugin-install has only its own --ovn-nb and --ovs-db after the command.
    argv = ["--ovn-nb", "unix:/nb", "plugin-install"] if before else ["plugin-install", "--ovn-nb", "unix:/nb"]
    args = process.fill_defaults(mesos.build_parser().parse_args(argv), process.GLOBAL_OPTIONS)
    assert (args.ovn_nb, args.ovs_db) == ("unix:/nb", None)
    argv = ["--timeout", "2", "nics-to-bridge", "eth0"] if before else ["nics-to-bridge", "eth0", "--timeout", "2"]
    args = process.fill_defaults(util.build_parser().parse_args(argv), util.SHARED)
    assert (args.timeout, args.ovs_db, args.nics) == ("2", None, ["eth0"])
