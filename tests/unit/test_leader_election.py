"""watcher.leader against the embedded API server over HTTP: client-go's acquire/renew rules
round by round (a fake clock decides expiry, so nothing here waits for a lease), optimistic
concurrency (one of two writers of one resourceVersion wins), release on a clean stop, and
the fence: a leader that cannot renew within the renew deadline is told once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ovn_k8s.errors import ConfigError
from ovn_k8s.kube.rest import ConnectionParams, KubeClient
from sandbox.kubeapi import KubeApiServer
from sandbox.watcher_harness import wait_until
from watcher.leader import ElectionConfig, LeaseElector

CFG = ElectionConfig(name="lease", namespace="kube-system", lease_duration=3.0,
                     renew_deadline=2.0, retry_period=0.5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Iterator[KubeApiServer]:
    server = KubeApiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(api: KubeApiServer) -> Iterator[KubeClient]:
    with KubeClient(ConnectionParams(server=api.url), timeout=5) as c:
        yield c


def elector(client: KubeClient, who: str, clock: Clock, lost: list[str] | None = None,
            cfg: ElectionConfig = CFG) -> LeaseElector:
    return LeaseElector(client, ElectionConfig(**{**_fields(cfg), "identity": who}),
                        on_lost=(lost.append if lost is not None else None), clock=clock)


def _fields(cfg: ElectionConfig) -> dict:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


class ReadTogether:
    """The real client, except that a GET returns only once the other candidate has read
    too: both then write from the same resourceVersion."""

    def __init__(self, client: KubeClient, barrier: threading.Barrier) -> None:
        self.client, self.barrier = client, barrier

    def get(self, path: str) -> dict:
        lease = self.client.get(path)
        self.barrier.wait(5)
        return lease

    def create(self, path: str, obj: dict) -> dict:
        return self.client.create(path, obj)

    def replace(self, path: str, obj: dict) -> dict:
        return self.client.replace(path, obj)


def spec(api: KubeApiServer) -> dict:
    return api.get("leases", "lease", namespace="kube-system")["spec"]


def test_acquire_hold_expire_take_over(api: KubeApiServer, client: KubeClient) -> None:
    clock = Clock()
    lost: list[str] = []
    a, b = elector(client, "a", clock, lost), elector(client, "b", clock)
    assert a._try_acquire_or_renew(clock())              # no Lease yet: created
    a._leader.set()
    first = spec(api)
    assert (first["holderIdentity"], first["leaseDurationSeconds"],
            first["leaseTransitions"]) == ("a", 3, 0)
    assert not b._try_acquire_or_renew(clock())          # held and fresh
    clock.now += 1.0
    assert a._try_acquire_or_renew(clock())              # renewed: renewTime moves only
    renewed = spec(api)
    assert renewed["acquireTime"] == first["acquireTime"]
    assert renewed["renewTime"] != first["renewTime"]
    clock.now += 2.9
    assert not b._try_acquire_or_renew(clock())          # b saw the renewal 1 s ago... on
    clock.now += 3.1                                     # its own clock: 3 s after, it expires
    assert b._try_acquire_or_renew(clock())
    taken = spec(api)
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 1)
    assert taken["acquireTime"] != first["acquireTime"]
    # a, still believing it leads, finds b holding: it is told it lost, once.
    assert not a._try_acquire_or_renew(clock())
    assert lost == ["the Lease is held by b now"] and a.lost and not a.is_leader


def test_one_of_two_writers_of_one_version_wins(api: KubeApiServer, client: KubeClient) -> None:
    clock = Clock()
    api.create("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                          "metadata": {"name": "lease", "namespace": "kube-system"},
                          "spec": {"holderIdentity": ""}}, namespace="kube-system")
    barrier = threading.Barrier(2)
    both_read = ReadTogether(client, barrier)
    a, b = elector(both_read, "a", clock), elector(both_read, "b", clock)  # type: ignore[arg-type]
    results: list[bool] = []
    threads = [threading.Thread(target=lambda e=e: results.append(e._try_acquire_or_renew(
        clock()))) for e in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [False, True]
    assert spec(api)["holderIdentity"] in ("a", "b")


def test_a_clean_stop_releases_and_the_next_takes_over_at_once(api: KubeApiServer,
                                                                client: KubeClient) -> None:
    clock = Clock()
    a, b = elector(client, "a", clock), elector(client, "b", clock)
    assert a._try_acquire_or_renew(clock())
    a._leader.set()
    a.stop(release=True)
    assert spec(api)["holderIdentity"] == ""
    assert b._try_acquire_or_renew(clock())              # no waiting for an expiry
    assert (spec(api)["holderIdentity"], spec(api)["leaseTransitions"]) == ("b", 1)


def test_a_leader_that_cannot_renew_is_fenced_within_the_deadline(api: KubeApiServer) -> None:
    cfg = ElectionConfig(name="lease", namespace="kube-system", lease_duration=1.0,
                         renew_deadline=0.5, retry_period=0.1, identity="a")
    lost: list[str] = []
    with KubeClient(ConnectionParams(server=api.url), timeout=0.2, connect_timeout=0.2) as c:
        leader = LeaseElector(c, cfg, on_lost=lost.append).start()
        try:
            assert leader.wait_leader(5)
            api.stop()                                  # the API server goes away
            wait_until(lambda: lost, 5, "the fence")
            assert lost == ["could not renew the Lease kube-system/lease within 0.5s"]
            assert leader.lost and not leader.is_leader
        finally:
            leader.stop(release=False)


@pytest.mark.parametrize(("lease", "renew", "retry", "message"), [
    (10.0, 10.0, 2.0, "lease-duration must be greater than --leader-elect-renew-deadline"),
    (15.0, 2.0, 2.0, "renew-deadline must be greater than 1.2 x --leader-elect-retry-period"),
])
def test_client_go_checks_the_durations(lease: float, renew: float, retry: float,
                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ElectionConfig(lease_duration=lease, renew_deadline=renew, retry_period=retry).check()


def _watcher_cfg(**values: str) -> object:
    from ovn_k8s import config
    from watcher import daemon

    return config.resolve({"ovn_nb": "unix:/nonexistent/nb.sock", **values}, daemon.OPTIONS,
                          env={"OVN_K8S_CONFIG": "/dev/null"}, ovs_external_ids=lambda: {})


@pytest.mark.parametrize(("values", "message"), [
    ({"leader_elect": "true", "leader_elect_renew_deadline": "20s"},
     "--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline"),
    ({"leader_elect": "true", "leader_elect_retry_period": "9s"},
     "renew-deadline must be greater than 1.2 x --leader-elect-retry-period"),
    ({"allocate_node_subnets": "true", "cluster_ip_subnet": "10.244.0.0/16",
      "node_subnet_prefix": "12"}, "--node-subnet-prefix /12 is larger than the cluster subnet"),
    ({"cluster_ip_subnet": "10.244.0.1/16"}, "--cluster-ip-subnet: '10.244.0.1/16' has host bits"),
])
def test_the_watcher_refuses_bad_settings_before_connecting(values: dict[str, str],
                                                            message: str) -> None:
    from watcher import daemon

    with pytest.raises(ConfigError, match=message):
        daemon.Watcher(_watcher_cfg(**values)).check()  # type: ignore[arg-type]
