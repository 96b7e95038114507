"""The Kubernetes client against a real loopback TLS server (scripted answers, no mocks).

Pins what the cluster connection promises: retries of 429/5xx/transport errors with Retry-After, no retry
of a conflicting apply, no redirect followed, no server text in errors, trust in the kubeconfig's CA only,
``tls-server-name``, ``insecure-skip-tls-verify``, the client certificate (whose key leaves no file
behind), and all of that through an ``HTTPS_PROXY`` too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import select
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rotator.errors import KubeconfigError, KubeError
from rotator.kube import FIELD_MANAGER, KubeClient, classify, ssl_context
from rotator.kubeconfig import ClusterAccess
from rotator.retry import Backoff
from rotator.secret import SecretStr

pytestmark = pytest.mark.integration

SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull", "namespace": "team-a"}}
MANIFEST = {**SECRET, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}


@dataclass(frozen=True)
class Pki:
    """A CA and PEM material it signed."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_pem: bytes

    def issue(self, *, dns: str | None = None, ip: str | None = None, client: str | None = None) -> tuple[str, str]:
        """A (certificate, key) PEM pair: a server certificate for ``dns``/``ip``, or a client one for ``client``."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        if dns:
            names.append(x509.DNSName(dns))
        if ip:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        builder = _builder(client or "server", key, x509.load_pem_x509_certificate(self.ca_pem).subject)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)


def _builder(common_name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name) -> x509.CertificateBuilder:
    now = dt.datetime.now(tz=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_pki(name: str = "test-ca") -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, key, subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Pki(key, cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_cn: str | None


@dataclass
class Script:
    """Answers served in order (then 200 with the secret); what arrived."""

    answers: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _TLSServer

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        cn = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"), None)
        script = self.server.script
        headers = {name.lower(): value for name, value in self.headers.items()}
        script.seen.append(Seen(self.command, self.path, headers, body, cn))
        status, headers, answer = script.answers.pop(0) if script.answers else (200, {}, SECRET)
        if answer == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def log_message(self, *args: object) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cert: tuple[str, str], client_ca: bytes | None, tmp: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = Script()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (tmp / "server.crt").write_text(cert[0])
        (tmp / "server.key").write_text(cert[1])
        context.load_cert_chain(tmp / "server.crt", tmp / "server.key")
        if client_ca:
            context.load_verify_locations(cadata=client_ca.decode())
            context.verify_mode = ssl.CERT_OPTIONAL
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # failed handshakes are what some tests are about


@pytest.fixture
def pki():
    return make_pki()


@pytest.fixture
def serve(pki, tmp_path):
    servers: list[_TLSServer] = []

    def start(cert: tuple[str, str] | None = None) -> _TLSServer:
        server = _TLSServer(cert or pki.issue(ip="127.0.0.1"), pki.ca_pem, tmp_path)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sleeps():
    return []


def access_for(server: _TLSServer, ca: bytes | None, **changes: Any) -> ClusterAccess:
    values: dict[str, Any] = {
        "server": f"https://127.0.0.1:{server.server_address[1]}",
        "ca_pem": ca,
        "insecure_skip_tls_verify": False,
        "tls_server_name": None,
        "client_cert_pem": None,
        "client_key_pem": None,
        "token": SecretStr("sa-token"),
    }
    return ClusterAccess(**(values | changes))


def client_for(access: ClusterAccess, sleeps: list[float]) -> KubeClient:
    return KubeClient(access, pool_size=4, backoff=Backoff(attempts=3, base_seconds=0.01), sleep=sleeps.append)


@pytest.fixture
def kube(serve, pki, sleeps):
    server = serve()
    client = client_for(access_for(server, pki.ca_pem), sleeps)
    yield client, server.script
    client.close()


def test_kube_client_reads_and_applies_with_the_token(kube):
    client, script = kube
    assert client.read_secret("team-a", "pull") == SECRET
    assert client.apply_secret("team-a", "pull", MANIFEST) == SECRET
    read, apply = script.seen
    assert (read.method, read.path) == ("GET", "/api/v1/namespaces/team-a/secrets/pull")
    assert read.headers["authorization"] == "Bearer sa-token"
    assert apply.method == "PATCH"
    assert apply.path == f"/api/v1/namespaces/team-a/secrets/pull?fieldManager={FIELD_MANAGER}&force=true"
    assert apply.headers["content-type"] == "application/apply-patch+yaml"
    assert json.loads(apply.body) == MANIFEST


def test_kube_client_missing_secret_reads_as_none(kube):
    client, script = kube
    script.answers.append((404, {}, {"kind": "Status", "reason": "NotFound"}))
    assert client.read_secret("team-a", "pull") is None


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_kube_client_retries_throttling_and_server_errors_honouring_retry_after(kube, sleeps, status):
    client, script = kube
    script.answers += [(status, {"Retry-After": "1.5"}, {"kind": "Status"}), (status, {}, {"kind": "Status"})]
    assert client.read_secret("team-a", "pull") == SECRET
    assert client.apply_secret("team-a", "pull", MANIFEST) == SECRET
    assert len(script.seen) == 4
    assert sleeps[0] == 1.5
    assert 0 <= sleeps[1] <= 0.02


def test_kube_client_gives_up_after_the_attempts_with_a_retryable_error(kube, sleeps):
    client, script = kube
    script.answers += [(503, {}, {"kind": "Status"})] * 3
    with pytest.raises(KubeError) as caught:
        client.apply_secret("team-a", "pull", MANIFEST)
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert len(script.seen) == 3
    assert len(sleeps) == 2


def test_kube_client_retries_a_dropped_connection(kube):
    client, script = kube
    script.answers.append((0, {}, "drop"))
    assert client.read_secret("team-a", "pull") == SECRET
    assert len(script.seen) == 2


def test_kube_client_does_not_retry_a_conflicting_apply(kube, sleeps):
    client, script = kube
    script.answers.append((409, {}, {"kind": "Status", "reason": "Conflict"}))
    with pytest.raises(KubeError, match="conflict") as caught:
        client.apply_secret("team-a", "pull", MANIFEST)
    assert caught.value.status == 409
    assert len(script.seen) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "credentials were not accepted"),
        (403, "infra/rbac"),
        (404, "does the namespace exist"),
        (422, "rejected the secret as invalid"),
        (418, "Teapot"),
    ],
)
def test_kube_client_errors_carry_hints_never_the_server_message(kube, status, hint):
    client, script = kube
    body = {"kind": "Status", "reason": "Teapot", "message": "token=leaked-in-a-message"}
    script.answers.append((status, {}, body))
    with pytest.raises(KubeError, match=hint) as caught:
        client.apply_secret("team-a", "pull", MANIFEST)
    assert caught.value.status == status
    assert not caught.value.retryable
    assert "leaked" not in str(caught.value)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_kube_client_never_follows_a_redirect(kube, status):
    client, script = kube
    script.answers.append((status, {"Location": "/elsewhere"}, {}))
    with pytest.raises(KubeError, match=f"HTTP {status}"):
        client.apply_secret("team-a", "pull", MANIFEST)
    assert [seen.path.split("?")[0] for seen in script.seen] == ["/api/v1/namespaces/team-a/secrets/pull"]


def test_kube_client_refuses_an_answer_that_is_not_a_json_object(kube):
    client, script = kube
    script.answers.append((200, {}, b"[1, 2]"))
    with pytest.raises(KubeError, match="not a JSON object"):
        client.read_secret("team-a", "pull")


def test_kube_client_trusts_only_the_kubeconfig_ca(serve, pki, sleeps, monkeypatch, tmp_path):
    server = serve()
    # The server's CA in every place a default trust store could come from: none of them may count.
    (tmp_path / "bundle.pem").write_bytes(pki.ca_pem)
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(tmp_path / "bundle.pem"))
    client = client_for(access_for(server, make_pki("other-ca").ca_pem), sleeps)
    with pytest.raises(KubeError, match="TLS with the API server") as caught:
        client.read_secret("team-a", "pull")
    assert not caught.value.retryable
    assert sleeps == []


def test_kube_client_checks_the_name_in_tls_server_name(serve, pki, sleeps):
    server = serve(pki.issue(dns="kube.internal"))
    without = client_for(access_for(server, pki.ca_pem), sleeps)
    with pytest.raises(KubeError, match="TLS"):
        without.read_secret("team-a", "pull")
    named = client_for(access_for(server, pki.ca_pem, tls_server_name="kube.internal"), sleeps)
    assert named.read_secret("team-a", "pull") == SECRET
    wrong = client_for(access_for(server, pki.ca_pem, tls_server_name="other.internal"), sleeps)
    with pytest.raises(KubeError, match="TLS"):
        wrong.read_secret("team-a", "pull")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_kube_client_insecure_skip_tls_verify_accepts_any_certificate(serve, sleeps, caplog):
    server = serve(make_pki("unknown-ca").issue(dns="elsewhere.invalid"))
    client = client_for(access_for(server, None, insecure_skip_tls_verify=True), sleeps)
    assert client.read_secret("team-a", "pull") == SECRET
    assert "disables TLS verification" in caplog.text


def test_kube_client_presents_the_client_certificate_and_leaves_no_key_file(serve, pki, sleeps, monkeypatch, tmp_path):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(private_tmp))
    server = serve()
    cert, key = pki.issue(client="rotator")
    access = access_for(server, pki.ca_pem, token=None, client_cert_pem=SecretStr(cert), client_key_pem=SecretStr(key))
    client = client_for(access, sleeps)
    assert list(private_tmp.iterdir()) == []
    barrier = threading.Barrier(3)  # three reads at once: three pooled connections, each presents the cert

    def read() -> None:
        barrier.wait(timeout=10)
        client.read_secret("team-a", "pull")

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert [seen.client_cn for seen in server.script.seen] == ["rotator"] * 3
    assert "authorization" not in server.script.seen[0].headers


class _ConnectProxy(ThreadingHTTPServer):
    """An HTTP CONNECT proxy that tunnels every request to one loopback port and notes the asked-for target."""

    daemon_threads = True

    def __init__(self, upstream: int) -> None:
        super().__init__(("127.0.0.1", 0), _ConnectHandler)
        self.upstream = upstream
        self.targets: list[str] = []


class _ConnectHandler(BaseHTTPRequestHandler):
    server: _ConnectProxy

    def do_CONNECT(self) -> None:
        self.server.targets.append(self.path)
        with socket.create_connection(("127.0.0.1", self.server.upstream)) as upstream:
            self.send_response(200)
            self.end_headers()
            _pipe(self.connection, upstream)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def _pipe(one: socket.socket, other: socket.socket) -> None:
    peers = {one: other, other: one}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 10)
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            peers[sock].sendall(data)
        if not readable:
            return


def test_kube_client_through_https_proxy_keeps_ca_client_certificate_and_server_name(serve, pki, sleeps, monkeypatch):
    server = serve(pki.issue(dns="kube.internal"))
    proxy = _ConnectProxy(server.server_address[1])
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    for variable in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    cert, key = pki.issue(client="rotator")
    access = dataclass_replace(
        access_for(server, pki.ca_pem),
        server="https://kube.invalid:6443",  # only the proxy resolves names
        tls_server_name="kube.internal",
        token=None,
        client_cert_pem=SecretStr(cert),
        client_key_pem=SecretStr(key),
    )
    try:
        assert client_for(access, sleeps).read_secret("team-a", "pull") == SECRET
        assert proxy.targets == ["kube.invalid:6443"]
        assert server.script.seen[0].client_cn == "rotator"
        untrusted = client_for(dataclass_replace(access, ca_pem=make_pki("other").ca_pem), sleeps)
        with pytest.raises(KubeError, match="TLS"):
            untrusted.read_secret("team-a", "pull")
    finally:
        proxy.shutdown()
        proxy.server_close()


def dataclass_replace(access: ClusterAccess, **changes: Any) -> ClusterAccess:
    return ClusterAccess(**(access.__dict__ | changes))


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (KubeError("x", status=429, retryable=True), True),
        (KubeError("x", status=503, retryable=True), True),
        (KubeError("x", status=None, retryable=True), True),
        (KubeError("x", status=None, retryable=False), False),
        (KubeError("x", status=409, retryable=True), False),
        (KubeError("x", status=501, retryable=False), False),
        (KubeError("x", status=403, retryable=False), False),
    ],
)
def test_kube_classify_retries_throttling_server_errors_and_no_answer(error, retry):
    assert classify(error) is retry


def test_kube_ssl_context_refuses_bad_ca_data_as_a_kubeconfig_error(serve, pki):
    access = access_for(serve(), b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(KubeconfigError, match="certificate-authority-data"):
        ssl_context(access)


def test_kube_ssl_context_refuses_an_encrypted_key_without_asking_for_a_pass_phrase(serve, pki):
    cert, _ = pki.issue(client="rotator")
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase"),
    )
    access = access_for(serve(), pki.ca_pem, client_cert_pem=SecretStr(cert), client_key_pem=SecretStr(key.decode()))
    with pytest.raises(KubeconfigError, match="do not load"):
        ssl_context(access)
