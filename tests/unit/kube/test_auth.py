"""Connection settings (ovn_k8s.kube.auth) used for real against http and https servers."""

from __future__ import annotations

import base64
import os

import pytest
import yaml

from ovn_k8s.kube import auth
from ovn_k8s.kube.errors import KubeConfigError, KubeTLSError, Unauthorized
from ovn_k8s.kube.rest import KubeClient
from sandbox.kubeapi import KubeApiServer


@pytest.fixture
def https_server(pki):
    with KubeApiServer(token="tok", tls_cert=pki.server_cert, tls_key=pki.server_key,
                       tls_client_ca=pki.ca_cert, start_resource_version=1) as server:
        server.create("nodes", {"metadata": {"name": "n1"}})
        yield server


def _nodes(params) -> list[str]:
    with KubeClient(params, timeout=5) as c:
        return [n["metadata"]["name"] for n in c.list("/api/v1/nodes")["items"]]


def _write_kubeconfig(path, *, server, cluster=None, user=None, context_ns=None,
                      extra_contexts=()):
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u",
                                                  **({"namespace": context_ns}
                                                     if context_ns else {})}},
                     *extra_contexts],
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _b64(path) -> str:
    with open(path, "rb") as fh:
        return base64.b64encode(fh.read()).decode()


def test_kubeconfig_token_and_ca_file_relative_path(tmp_path, pki, https_server):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes(open(pki.ca_cert, "rb").read())
    path = _write_kubeconfig(tmp_path / "config", server=https_server.url,
                             cluster={"certificate-authority": "certs/ca.crt"},
                             user={"token": "tok"}, context_ns="team-a")
    params = auth.from_kubeconfig(path)
    assert params.ca_file == str(tmp_path / "certs" / "ca.crt")  # relative to the file
    assert params.namespace == "team-a" and "context main" in params.source
    assert _nodes(params) == ["n1"]


def test_kubeconfig_inline_data_and_client_certificate(tmp_path, pki, https_server):
    path = _write_kubeconfig(tmp_path / "config", server=https_server.url,
                             cluster={"certificate-authority-data": _b64(pki.ca_cert)},
                             user={"client-certificate-data": _b64(pki.client_cert),
                                   "client-key-data": _b64(pki.client_key)})
    data_dir = tmp_path / "private"
    params = auth.from_kubeconfig(path, data_dir=str(data_dir))
    assert params.token is None  # authenticated by the client certificate alone
    for f in (params.ca_file, params.client_cert, params.client_key):
        assert os.path.dirname(f) == str(data_dir)
        assert oct(os.stat(f).st_mode & 0o777) == "0o600"
    assert _nodes(params) == ["n1"]


def test_kubeconfig_written_by_the_server(tmp_path, pki, https_server):
    path = https_server.write_kubeconfig(tmp_path / "kc", ca_file=pki.ca_cert)
    assert _nodes(auth.from_kubeconfig(path)) == ["n1"]


def test_kubeconfig_insecure_skip_verify(tmp_path, https_server):
    path = _write_kubeconfig(tmp_path / "config", server=https_server.url,
                             cluster={"insecure-skip-tls-verify": True},
                             user={"token": "tok"})
    params = auth.from_kubeconfig(path)
    assert params.insecure
    assert _nodes(params) == ["n1"]


def test_wrong_ca_is_a_tls_error(tmp_path, pki, https_server):
    path = _write_kubeconfig(tmp_path / "config", server=https_server.url,
                             cluster={"certificate-authority": pki.other_ca_cert},
                             user={"token": "tok"})
    with pytest.raises(KubeTLSError) as exc:
        _nodes(auth.from_kubeconfig(path))
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)


def test_wrong_token_is_a_clear_unauthorized_error(tmp_path, pki, https_server):
    path = _write_kubeconfig(tmp_path / "config", server=https_server.url,
                             cluster={"certificate-authority": pki.ca_cert},
                             user={"token": "wrong"})
    with pytest.raises(Unauthorized) as exc:
        _nodes(auth.from_kubeconfig(path))
    assert exc.value.code == 401
    assert str(exc.value) == "GET /api/v1/nodes: 401 Unauthorized: Unauthorized"


def test_kubeconfig_context_selection_and_token_file(tmp_path, https_server, pki):
    token_file = tmp_path / "tok"
    token_file.write_text("tok\n")
    path = _write_kubeconfig(
        tmp_path / "config", server="https://unused.invalid",
        extra_contexts=[{"name": "other", "context": {"cluster": "c2", "user": "u2"}}])
    doc = yaml.safe_load(open(path))
    doc["clusters"].append({"name": "c2", "cluster": {"server": https_server.url,
                                                      "certificate-authority": pki.ca_cert}})
    doc["users"].append({"name": "u2", "user": {"tokenFile": "tok"}})
    open(path, "w").write(yaml.safe_dump(doc))
    params = auth.from_kubeconfig(path, context="other")
    assert params.token_file == str(token_file)
    assert _nodes(params) == ["n1"]


def test_kubeconfig_default_location_from_environment(tmp_path):
    path = _write_kubeconfig(tmp_path / "config", server="http://127.0.0.1:1")
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "missing"), path])}
    assert auth.default_kubeconfig_path(env) == path
    assert auth.from_kubeconfig(environ=env).server == "http://127.0.0.1:1"


@pytest.mark.parametrize(("change", "message"), [
    ({"user": {"exec": {"command": "aws"}}}, "exec"),
    ({"user": {"username": "a", "password": "b"}}, "basic auth"),
    ({"cluster": {"certificate-authority": "/does/not/exist"}}, "does not exist"),
    ({"cluster": {"certificate-authority-data": "!!!"}}, "base64"),
])
def test_kubeconfig_problems_are_config_errors(tmp_path, change, message):
    path = _write_kubeconfig(tmp_path / "config", server="https://127.0.0.1:1", **change)
    with pytest.raises(KubeConfigError) as exc:
        auth.from_kubeconfig(path)
    assert message in str(exc.value)


def test_kubeconfig_structural_errors(tmp_path):
    (tmp_path / "bad").write_text("just a string")
    with pytest.raises(KubeConfigError, match="not a mapping"):
        auth.from_kubeconfig(str(tmp_path / "bad"))
    with pytest.raises(KubeConfigError, match="cannot read"):
        auth.from_kubeconfig(str(tmp_path / "missing"))
    path = _write_kubeconfig(tmp_path / "config", server="http://x")
    with pytest.raises(KubeConfigError, match="no context named 'nope'"):
        auth.from_kubeconfig(path, context="nope")


def test_in_cluster_service_account(tmp_path, pki, https_server):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("tok")
    (sa / "ca.crt").write_bytes(open(pki.ca_cert, "rb").read())
    (sa / "namespace").write_text("kube-system\n")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
           "KUBERNETES_SERVICE_PORT": str(https_server.port)}
    assert auth.in_cluster_available(sa_dir=str(sa), environ=env)
    params = auth.from_service_account(sa_dir=str(sa), environ=env)
    assert params.server == https_server.url
    assert params.token_file == str(sa / "token") and params.token is None
    assert params.namespace == "kube-system"
    assert _nodes(params) == ["n1"]


def test_in_cluster_details_and_errors(tmp_path):
    sa = tmp_path / "sa"
    sa.mkdir()
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert not auth.in_cluster_available(sa_dir=str(sa), environ=env)
    with pytest.raises(KubeConfigError, match="token"):
        auth.from_service_account(sa_dir=str(sa), environ=env)
    (sa / "token").write_text("t")
    params = auth.from_service_account(sa_dir=str(sa), environ=env)
    assert params.server == "https://[fd00::1]:443" and params.ca_file is None
    with pytest.raises(KubeConfigError, match="not running in a cluster"):
        auth.from_service_account(sa_dir=str(sa), environ={})


def test_ovs_values_default_to_http(kubeapi):
    host_port = kubeapi.url.removeprefix("http://")
    params = auth.from_ovs_values(f'"{host_port}"', token='"ignored-by-open-server"')
    assert params.server == kubeapi.url and params.ca_file is None
    assert params.token == "ignored-by-open-server"
    kubeapi.create("nodes", {"metadata": {"name": "n1"}})
    assert _nodes(params) == ["n1"]


def test_ovs_values_https_with_ca_text(tmp_path, pki, https_server):
    pem = open(pki.ca_cert).read()
    escaped = '"' + pem.replace("\n", "\\n") + '"'  # as `ovs-vsctl get` prints it
    ca_file = tmp_path / "etc" / "k8s-ca.crt"
    params = auth.from_ovs_values(https_server.url, token="tok", ca_certificate=escaped,
                                  ca_file=str(ca_file))
    assert params.ca_file == str(ca_file) and ca_file.read_text() == pem
    assert _nodes(params) == ["n1"]
    # An existing CA file wins over the text (the original's order).
    again = auth.from_ovs_values(https_server.url, token="tok", ca_certificate="garbage",
                                 ca_file=str(ca_file))
    assert again.ca_file == str(ca_file) and ca_file.read_text() == pem


def test_ovs_values_ca_falls_back_to_a_private_file(tmp_path, pki, https_server):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    pem = open(pki.ca_cert).read().replace("\n", "\\n")
    params = auth.from_ovs_values(https_server.url, token="tok", ca_certificate=pem,
                                  ca_file=str(blocker / "ca.crt"), data_dir=str(tmp_path / "d"))
    assert params.ca_file == str(tmp_path / "d" / "ca.crt")
    assert _nodes(params) == ["n1"]


def test_load_connection_params_order(tmp_path, kubeapi):
    kc = _write_kubeconfig(tmp_path / "config", server="http://from-kubeconfig:1")
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("t")
    in_cluster = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
                  "KUBECONFIG": kc}

    def load(**kw):
        return auth.load_connection_params(sa_dir=str(sa), environ=in_cluster, **kw).server
    assert load(kubeconfig=kc, api_server="1.2.3.4:8080") == "http://from-kubeconfig:1"
    assert load(api_server="1.2.3.4:8080") == "http://1.2.3.4:8080"
    assert load() == "https://10.96.0.1:443"
    assert auth.load_connection_params(sa_dir=str(tmp_path / "none"),
                                       environ={"KUBECONFIG": kc}).server == \
        "http://from-kubeconfig:1"
    with pytest.raises(KubeConfigError, match="no Kubernetes API server configured"):
        auth.load_connection_params(sa_dir=str(tmp_path / "none"),
                                    environ={"HOME": str(tmp_path)} | {"KUBECONFIG": ""})
