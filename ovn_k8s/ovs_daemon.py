"""The OVS daemon conventions for our daemons (ovn-k8s-watcher, ovn-k8s-gateway-helper), on
python-ovs's own modules rather than new code:

- `ovs.daemon`: --pidfile[=FILE], --overwrite-pidfile, --detach (the parent exits once the
  child calls `Daemon.serving()`, or with the child's exit status), --monitor, --no-chdir;
- `ovs.vlog`: --log-file[=FILE], -v/--verbose MODULE:DESTINATION:LEVEL; our `logging` records
  are handed to vlog modules named after our packages (`watcher`, `gateway_helper`, `ovn_k8s`,
  `ovsdbapp`), so `vlog/set` and `vlog/list` cover them;
- `ovs.unixctl.server`: the control socket (RUNDIR/PROG.PID.ctl, or --unixctl) answering
  `exit`, `version`, `vlog/set`, `vlog/list`, `vlog/reopen` and the daemon's `status`, so that
  `ovs-appctl -t PROG ...` drives it.

SIGTERM, SIGINT and `ovs-appctl exit` all call the daemon's stop function; if the daemon has
not exited STOP_GRACE seconds later (a thread stuck in a call that cannot be interrupted), the
process removes its pidfile and exits 1 at once, so a stop never takes more than ~5 s.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

# Every python-ovs module that makes a Vlog at import time must be imported before
# Vlog.init(), which forbids new ones afterwards.
import ovs.daemon
import ovs.db.idl
import ovs.dirs
import ovs.fatal_signal
import ovs.jsonrpc
import ovs.poller
import ovs.reconnect
import ovs.socket_util
import ovs.stream
import ovs.unixctl
import ovs.unixctl.client
import ovs.unixctl.server
import ovs.util
import ovs.vlog

from ovn_k8s import config
from ovn_k8s.errors import ConfigError

LOG = logging.getLogger(__name__)
STOP_GRACE = 4.0
try:
    VERSION = importlib.metadata.version("ovn-k8s")
except importlib.metadata.PackageNotFoundError:
    VERSION = "unknown"
# Our vlog modules: the first component of a `logging` logger name picks one.
VLOG_MODULES = ("ovn_k8s", "watcher", "gateway_helper", "ovsdbapp", "sandbox")
_VLOGS = {name: ovs.vlog.Vlog(name) for name in VLOG_MODULES}
# Vlog's own methods, kept before anyone patches them: nb.connection has ovsdbapp send
# python-ovs's messages to `logging`, which would send ours back to `logging` without end.
_EMIT = {name: getattr(ovs.vlog.Vlog, name) for name in ("emer", "err", "warn", "info", "dbg")}
# --log-level (today's flag, and the config file's log_level) in vlog's words.
LEVEL_WORDS = {"debug": "dbg", "dbg": "dbg", "info": "info", "warning": "warn", "warn": "warn",
               "error": "err", "err": "err", "emer": "emer", "critical": "emer", "off": "off"}
_LOGGING_LEVELS = {"dbg": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                   "err": logging.ERROR, "emer": logging.CRITICAL, "off": logging.CRITICAL + 10}
DAEMON_OPTIONS = ("rundir", "logdir")
DEFAULT_PIDFILE = "<RUNDIR/PROG.pid>"   # --pidfile without a name: named once RUNDIR is known


# --- flags ---------------------------------------------------------------------------------------
def add_args(parser: argparse.ArgumentParser, prog: str) -> None:
    """The OVS daemon and logging flags (plus today's --log-level), on `parser`."""
    ovs.util.PROGRAM_NAME = prog
    ovs.daemon.add_args(parser)
    for action in parser._actions:
        if action.dest == "pidfile":
            action.const = DEFAULT_PIDFILE
    group = parser.add_argument_group("logging (as the OVS daemons; see ovs-appctl(8))")
    group.add_argument("--log-file", nargs="?", const="default", default=None, metavar="FILE",
                       help=f"log to FILE (default FILE: LOGDIR/{prog}.log); without -v for the "
                            "console, nothing is logged on stderr any more; env "
                            "OVN_K8S_LOG_FILE")
    # action=append, not python-ovs's nargs="*": `-vfile:info -vconsole:emer` keeps both.
    group.add_argument("-v", "--verbose", action="append", nargs="?", const="any:any:dbg",
                       default=None, metavar="MODULE:DESTINATION:LEVEL",
                       help="set log levels as ovs-appctl vlog/set does, e.g. -vfile:info "
                            "-vconsole:emer; alone: everything at dbg. Destinations: console, "
                            "file, syslog (off unless asked for); modules: see vlog/list")
    config.add_options(group, ("log_level", *DAEMON_OPTIONS))  # type: ignore[arg-type]
    group.add_argument("--unixctl", metavar="SOCKET", default=None,
                       help=f"the control socket for ovs-appctl (default: RUNDIR/{prog}.PID.ctl)")


# --- logging through ovs.vlog --------------------------------------------------------------------
class _VlogHandler(logging.Handler):
    """Hands each `logging` record to the vlog module of its package."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            vlog = _VLOGS.get(record.name.split(".", 1)[0], _VLOGS["ovn_k8s"])
            msg = record.getMessage()
            if record.exc_info:
                msg += "\n" + logging.Formatter().formatException(record.exc_info)
            level = record.levelno
            name = ("emer" if level >= logging.CRITICAL else "err" if level >= logging.ERROR
                    else "warn" if level >= logging.WARNING else "info" if level >= logging.INFO
                    else "dbg")
            _EMIT[name](vlog, msg)
        except Exception:  # noqa: BLE001 -- logging must never raise into the caller
            self.handleError(record)


def _sync_root_level() -> None:
    """Let through `logging` exactly what some destination of our modules wants."""
    lowest = _LOGGING_LEVELS["off"]
    for line in ovs.vlog.Vlog.get_levels().splitlines()[2:]:
        words = line.split()
        if words and words[0] in _VLOGS:
            lowest = min([lowest, *(_LOGGING_LEVELS.get(w, lowest) for w in words[1:])])
    logging.getLogger().setLevel(lowest)
    # python-ovs reports every reconnect attempt; our own lines already say what failed.
    logging.getLogger("ovsdbapp").setLevel(lowest if lowest <= logging.INFO else logging.ERROR)


def _unixctl_vlog_set(conn: Any, argv: list[str], aux: Any) -> None:
    for arg in argv:
        msg = ovs.vlog.Vlog.set_levels_from_string(arg)
        if msg:
            conn.reply(msg)
            return
    _sync_root_level()
    conn.reply(None)


def log_file_path(value: str | None, prog: str) -> str | None:
    if not value:
        return None
    if value == "default":
        return os.path.join(ovs.dirs.LOGDIR, f"{prog}.log")
    return value


def start(args: argparse.Namespace, prog: str, options: Sequence[str] = ()) -> config.Config:
    """The start-up every daemon shares: resolve `options` with the logging, pidfile and
    directory ones, set RUNDIR and LOGDIR, log as asked (-v, --log-file, --log-level), and take
    --pidfile from whichever layer set it. Raises ConfigError (one line)."""
    pre = config.resolve(args, (*options, "log_level", "log_file", "pidfile", *DAEMON_OPTIONS))
    Daemon.set_dirs(pre)
    setup_logging(prog, level=pre.log_level, verbose=args.verbose,
                  log_file=log_file_path(pre.log_file, prog))
    args.pidfile = pre.pidfile                 # the flag, else env or config file
    return pre


def setup_logging(prog: str, *, level: str | None, log_file: str | None,
                  verbose: Sequence[str] | None) -> None:
    """ovs.vlog with today's --log-level as the base level, then each -v spec in order.
    Raises ConfigError (one line) on a bad level, spec or log file."""
    base = LEVEL_WORDS.get((level or "warning").lower())
    if base is None:
        raise ConfigError(f"--log-level: {level!r} is not one of debug, info, warning, error")
    if log_file:
        try:
            with open(log_file, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigError(f"--log-file {log_file}: cannot open it: "
                              f"{exc.strerror or exc}") from None
    specs = [f"any:any:{base}", "any:syslog:off"]
    if log_file and not any("console" in (v or "") for v in verbose or ()):
        specs.append("any:console:off")      # today's --log-file: the file instead of stderr
    for spec in [*specs, *(verbose or ())]:
        msg = ovs.vlog.Vlog.set_levels_from_string(spec)
        if msg:
            raise ConfigError(f"-v {spec}: {msg}")
    for dest in ("console", "file", "syslog"):
        # vlog's own loggers: not back to root (our handler), and never to logging's
        # last-resort stderr handler when the destination has no handler (no --log-file).
        logging.getLogger(dest).propagate = False
        logging.getLogger(dest).addHandler(logging.NullHandler())
    # Ours first: command_register keeps the first registration of a name.
    ovs.unixctl.command_register("vlog/set", "spec", 1, sys.maxsize, _unixctl_vlog_set, None)
    ovs.vlog.Vlog.init(log_file)
    root = logging.getLogger()
    root.handlers[:] = [_VlogHandler()]
    _sync_root_level()


# --- the daemon ------------------------------------------------------------------------------------
class Daemon:
    """One daemon process: pidfile, detach/monitor, control socket, signals.

        d = Daemon(PROG, args, stop=..., status=...)
        d.start()        # forks as asked, writes the pidfile, opens the control socket
        ...              # checks and connections: an error here is the parent's exit status
        d.serving()      # the --detach parent exits 0 now
        ...
        d.close()
    """

    def __init__(self, prog: str, args: argparse.Namespace, *,
                 stop: Callable[[], None], status: Callable[[], str]) -> None:
        self.prog = prog
        self.args = args
        self._stop = stop
        self._status = status
        self.pidfile: str | None = None
        self.stopping = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._watchdog: threading.Timer | None = None

    @staticmethod
    def set_dirs(cfg: config.Config) -> None:
        """The config file's rundir/logdir (the original keys) over OVS_RUNDIR/OVS_LOGDIR."""
        if cfg.rundir:
            ovs.dirs.RUNDIR = cfg.rundir
        if cfg.logdir:
            ovs.dirs.LOGDIR = cfg.logdir

    def start(self) -> None:
        args = self.args
        if args.pidfile:
            name = "" if args.pidfile == DEFAULT_PIDFILE else args.pidfile
            self.pidfile = ovs.daemon.make_pidfile_name(name)
            ovs.daemon.set_pidfile(self.pidfile)
        if args.overwrite_pidfile:
            ovs.daemon.ignore_existing_pidfile()
        if args.detach:
            ovs.daemon.set_detach()
        if args.no_chdir:
            ovs.daemon.set_no_chdir()
        if args.monitor:
            ovs.daemon.set_monitor()
        try:
            os.makedirs(ovs.dirs.RUNDIR, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"run directory {ovs.dirs.RUNDIR}: {exc.strerror or exc}") from None
        ovs.daemon.daemonize_start()          # forks here; a pidfile conflict exits 1
        self._install_signals()
        ovs.unixctl.command_register("exit", "", 0, 0, self._cmd_exit, None)
        ovs.unixctl.command_register("status", "", 0, 0, self._cmd_status, None)
        # Before the server's own "version", which would say "(Open vSwitch)".
        ovs.unixctl.command_register("version", "", 0, 0, self._cmd_version, None)
        error, server = ovs.unixctl.server.UnixctlServer.create(args.unixctl, version=VERSION)
        if error:
            raise ConfigError(f"cannot open the control socket {args.unixctl or ovs.dirs.RUNDIR}: "
                              f"{os.strerror(error)}")
        self._server = server
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve_control, name="unixctl", daemon=True)
        self._thread.start()

    def serving(self) -> None:
        """Start-up went well: let a --detach parent exit 0 (and close stdio)."""
        ovs.daemon.daemonize_complete()

    def request_stop(self, why: str) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        LOG.info("%s: stopping", why)
        self._watchdog = threading.Timer(STOP_GRACE, self._force_exit, args=(why,))
        self._watchdog.daemon = True
        self._watchdog.start()
        self._stop()

    def _force_exit(self, why: str) -> None:
        LOG.error("still running %.0fs after %s; exiting now", STOP_GRACE, why)
        if self.pidfile:
            ovs.fatal_signal.unlink_file_now(self.pidfile)
        logging.shutdown()
        os._exit(1)

    def close(self) -> None:
        """Stop answering on the control socket (replies already queued are sent first)."""
        self._closed.set()
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=2)
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
        # The watchdog stays armed: the interpreter's own exit (joining executor threads) is
        # part of the stop too.

    # -- signals and control socket -----------------------------------------------------------
    def _install_signals(self) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            self.request_stop(signal.Signals(signum).name)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)

    def _cmd_exit(self, conn: Any, argv: list[str], aux: Any) -> None:
        conn.reply(None)
        self.request_stop("ovs-appctl exit")

    def _cmd_version(self, conn: Any, argv: list[str], aux: Any) -> None:
        conn.reply(f"{self.prog} (ovn-k8s) {VERSION}")

    def _cmd_status(self, conn: Any, argv: list[str], aux: Any) -> None:
        try:
            conn.reply(self._status())
        except Exception as exc:  # noqa: BLE001 -- a status bug must not kill the socket
            conn.reply_error(f"status failed: {exc}")

    def _serve_control(self) -> None:
        server = self._server
        while True:
            server.run()
            if self._closed.is_set():
                break
            poller = ovs.poller.Poller()
            server.wait(poller)
            poller.fd_wait(self._wake_r, ovs.poller.POLLIN)     # close() writes to it
            poller.block()
        server.close()


def call_or_stop(fn: Callable[[], Any], stop: Any) -> tuple[bool, Any]:
    """fn() in a helper thread; (True, result) when it returns, (False, None) as soon as `stop`
    is set (the thread is left to finish on its own). Its exception is re-raised here."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="call", daemon=True).start()
    while not done.wait(0.1):
        if stop.is_set():
            return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("result")
