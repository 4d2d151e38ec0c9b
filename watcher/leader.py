"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics
(k8s.io/client-go/tools/leaderelection) and its defaults: lease 15 s, renew deadline 10 s,
retry period 2 s.

- Acquire: every retry period (with up to 20 % jitter, client-go's JitterFactor 1.2), read
  the Lease; take it when it does not exist, is ours, has no holder, or has not changed for
  the lease's `leaseDurationSeconds` as measured on OUR clock since we last saw it change
  (client-go's observedTime: no clock in the Lease is trusted, so skew between machines does
  not matter). Writes carry the resourceVersion read: of two candidates one wins (409).
- Renew: every retry period; `renewTime` moves, `acquireTime` and `leaseTransitions` stay.
- Fencing: a leader whose last successful renewal STARTED more than the renew deadline ago
  has lost (a watchdog checks it every few milliseconds, so a request hanging on a stopped
  API server does not delay it). `on_lost` runs once; the daemon stops writing at once and
  exits. A standby can take the lease only a lease duration after it saw our last renewal,
  which happened after that renewal started: the gap (lease - renew deadline, 5 s by
  default) is the time the old leader has to stop, and the daemon's hard exit comes well
  inside it. The NB's OVSDB lock stays as a second fence (watcher.daemon).
- Release: on a clean stop the leader empties `holderIdentity` (client-go's
  ReleaseOnCancel), so a standby takes over at its next retry instead of after a lease.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ovn_k8s.errors import ConfigError
from ovn_k8s.kube.errors import Conflict, KubeError, NotFound
from ovn_k8s.kube.params import resource_path

LOG = logging.getLogger(__name__)
API_VERSION = "coordination.k8s.io/v1"
JITTER_FACTOR = 1.2          # client-go wait.JitterUntil(retryPeriod, JitterFactor)
WATCHDOG_INTERVAL = 0.02


@dataclass(frozen=True, slots=True)
class ElectionConfig:
    name: str = "ovn-k8s-watcher"
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = ""

    def check(self) -> None:
        # client-go's NewLeaderElector checks.
        if self.lease_duration <= self.renew_deadline:
            raise ConfigError("--leader-elect-lease-duration must be greater than "
                              "--leader-elect-renew-deadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ConfigError("--leader-elect-renew-deadline must be greater than "
                              f"{JITTER_FACTOR} x --leader-elect-retry-period")
        if not self.name or not self.namespace:
            raise ConfigError("the Lease needs a name and a namespace")


def default_identity() -> str:
    """hostname_<uuid>, as kube components make theirs: unique per process."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(ts: float | None = None) -> str:
    """metav1.MicroTime as the API server writes it."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Run `start()`; `is_leader` says whether we hold the lease now. `on_leading` runs once
    when the lease is first acquired, `on_lost` once when it is lost (never both at once)."""

    def __init__(self, client: Any, cfg: ElectionConfig, *,
                 on_leading: Callable[[], None] | None = None,
                 on_lost: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        cfg.check()
        self.client = client
        self.cfg = cfg if cfg.identity else ElectionConfig(**{**_fields(cfg),
                                                              "identity": default_identity()})
        self.identity = self.cfg.identity
        self._on_leading = on_leading
        self._on_lost = on_lost
        self._clock = clock
        self._path = resource_path("leases", namespace=cfg.namespace, name=cfg.name)
        self._collection = resource_path("leases", namespace=cfg.namespace)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._leader = threading.Event()
        self._lost = threading.Event()
        self._observed: dict[str, Any] | None = None     # the spec we last saw
        self._observed_rv: str | None = None
        self._observed_at = 0.0                           # our clock when it last changed
        self._renewed_at = 0.0                            # start of our last good write
        self.holder: str = ""                             # the holder we last saw
        self.transitions = 0
        self.acquired_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="leader-elect", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="leader-fence", daemon=True)

    # -- state -----------------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._leader.is_set() and not self._lost.is_set()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def wait_leader(self, timeout: float | None = None) -> bool:
        return self._leader.wait(timeout)

    def describe(self) -> str:
        lease = f"Lease {self.cfg.namespace}/{self.cfg.name}"
        if self.lost:
            return f"lost ({lease}; was held by {self.identity})"
        if self.is_leader:
            return f"leader ({lease} held by {self.identity})"
        return f"standby ({lease} held by {self.holder or 'nobody'}; we are {self.identity})"

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> LeaseElector:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop trying; with `release`, give the lease up if we still hold it (call only once
        nothing writes any more)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self.cfg.retry_period + 1.0)
        if release and self.is_leader:
            self._release()

    def _run(self) -> None:
        while not self._stop.is_set() and not self._lost.is_set():
            started = self._clock()
            ok = self._try_acquire_or_renew(started)
            if ok and not self._leader.is_set():
                self.acquired_at = self._clock()
                LOG.info("leader election: acquired the Lease %s/%s as %s", self.cfg.namespace,
                         self.cfg.name, self.identity)
                self._leader.set()
                if self._on_leading is not None:
                    self._on_leading()
            period = self.cfg.retry_period
            if not self._leader.is_set():
                period *= 1.0 + random.random() * (JITTER_FACTOR - 1.0)
            self._stop.wait(max(0.0, period - (self._clock() - started)))

    def _watch(self) -> None:
        """The fence: no successful renewal for the renew deadline means we have lost."""
        while not self._stop.wait(WATCHDOG_INTERVAL):
            if self._leader.is_set() and not self._lost.is_set() and \
                    self._clock() - self._renewed_at > self.cfg.renew_deadline:
                self._lose(f"could not renew the Lease {self.cfg.namespace}/{self.cfg.name} "
                           f"within {self.cfg.renew_deadline:g}s")
                return

    def _lose(self, why: str) -> None:
        with self._lock:
            if self._lost.is_set():
                return
            self._lost.set()
        LOG.error("leader election: %s: no longer the leader", why)
        if self._on_lost is not None:
            self._on_lost(why)

    # -- one round ---------------------------------------------------------------------------------
    def _try_acquire_or_renew(self, started: float) -> bool:
        now_wall = micro_time()
        duration = max(1, math.ceil(self.cfg.lease_duration))
        try:
            lease = self.client.get(self._path)
        except NotFound:
            lease = None
        except KubeError as exc:
            LOG.warning("leader election: reading the Lease failed: %s", exc)
            return False
        if lease is None:
            spec = {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                    "acquireTime": now_wall, "renewTime": now_wall, "leaseTransitions": 0}
            body = {"apiVersion": API_VERSION, "kind": "Lease",
                    "metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace},
                    "spec": spec}
            try:
                created = self.client.create(self._collection, body)
            except KubeError as exc:        # AlreadyExists: another candidate was first
                LOG.info("leader election: creating the Lease failed: %s", exc)
                return False
            self._saw(created, self._clock())
            self._renewed_at = started
            return True
        spec = dict(lease.get("spec") or {})
        meta = lease.get("metadata") or {}
        now = self._clock()
        if spec != self._observed:
            self._observed, self._observed_at = spec, now
        self._observed_rv = meta.get("resourceVersion")
        holder = spec.get("holderIdentity") or ""
        self.holder = holder
        held_for = spec.get("leaseDurationSeconds") or duration
        if holder and holder != self.identity:
            if self._leader.is_set():
                self._lose(f"the Lease is held by {holder} now")
                return False
            if self._observed_at + held_for > now:
                return False                # held, and not expired on our clock
        mine = holder == self.identity
        new_spec = {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                    "acquireTime": spec.get("acquireTime") if mine and spec.get("acquireTime")
                    else now_wall,
                    "renewTime": now_wall,
                    "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)}
        body = dict(lease, spec=new_spec)
        try:
            updated = self.client.replace(self._path, body)
        except Conflict:
            return False                    # someone else wrote first: re-read next round
        except KubeError as exc:
            LOG.warning("leader election: writing the Lease failed: %s", exc)
            return False
        if self._lost.is_set():
            return False
        self._saw(updated, self._clock())
        self._renewed_at = started
        if not mine:
            LOG.info("leader election: took the Lease over from %s", holder or "nobody")
        return True

    def _saw(self, lease: dict[str, Any], at: float) -> None:
        self._observed = dict(lease.get("spec") or {})
        self._observed_at = at
        self._observed_rv = (lease.get("metadata") or {}).get("resourceVersion")
        self.holder = self._observed.get("holderIdentity") or ""
        self.transitions = int(self._observed.get("leaseTransitions") or 0)

    def _release(self) -> None:
        try:
            lease = self.client.get(self._path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now_wall = micro_time()
            body = dict(lease, spec={"holderIdentity": "", "leaseDurationSeconds": 1,
                                     "acquireTime": now_wall, "renewTime": now_wall,
                                     "leaseTransitions": spec.get("leaseTransitions") or 0})
            self.client.replace(self._path, body)
            LOG.info("leader election: released the Lease %s/%s", self.cfg.namespace,
                     self.cfg.name)
        except KubeError as exc:
            LOG.warning("leader election: releasing the Lease failed: %s", exc)


def _fields(cfg: ElectionConfig) -> dict[str, Any]:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}
