"""The rotator's cluster connection against the real kube-apiserver: context choice and TLS server names.

The serving certificate of the local apiserver is valid for 127.0.0.1 and ``localhost`` only. A byte pipe
on ::1 (IPv6 loopback) reaches the same apiserver under an address the certificate
does not name, which is exactly the case ``tls-server-name`` exists for.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import yaml
from rotator.clients import connect
from rotator.config import load_settings
from rotator.errors import KubeError
from rotator.kube import KubeClient
from rotator.kubeconfig import parse_kubeconfig
from rotator.secret import SecretStr

if TYPE_CHECKING:
    from pathlib import Path

    from devkit.cluster import ClusterHandle

pytestmark = pytest.mark.integration


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def forwarder(control_plane: ClusterHandle) -> Iterator[str]:
    """``https://[::1]:<port>``: the apiserver under an address its certificate does not name."""
    upstream = urlsplit(control_plane.server)
    listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    listener.settimeout(0.1)
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                downstream, _ = listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection((upstream.hostname or "", upstream.port or 443))
            sockets.extend((downstream, server))
            for source, sink in ((downstream, server), (server, downstream)):
                threading.Thread(target=_relay, args=(source, sink), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"https://[::1]:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    listener.close()
    for sock in sockets:
        sock.close()


def admin_kubeconfig(control_plane: ClusterHandle, **cluster_changes: object) -> dict:
    document = yaml.safe_load(control_plane.admin_kubeconfig())
    document["clusters"][0]["cluster"].update(cluster_changes)
    return document


def test_cluster_tls_server_name_is_checked_against_the_apiserver_certificate(control_plane, forwarder):
    for server_name, works in ((None, False), ("localhost", True), ("kubernetes.invalid", False)):
        changes = {"server": forwarder} | ({"tls-server-name": server_name} if server_name else {})
        text = SecretStr(yaml.safe_dump(admin_kubeconfig(control_plane, **changes)))
        kube = KubeClient(parse_kubeconfig(text, context=None, base_dir=None), pool_size=1)
        try:
            if works:
                assert kube.read_secret("default", "no-such-secret") is None
            else:
                with pytest.raises(KubeError, match="TLS with the API server"):
                    kube.read_secret("default", "no-such-secret")
        finally:
            kube.close()


def test_cluster_kube_context_picks_the_cluster_among_several(control_plane, tmp_path: Path, namespace_factory):
    namespace = namespace_factory(prefix="ctx")
    document = admin_kubeconfig(control_plane)
    live, user = document["clusters"][0], document["users"][0]["name"]
    dead = {"name": "dead", "cluster": {**live["cluster"], "server": "https://127.0.0.1:9"}}
    document["clusters"].append(dead)
    document["contexts"] = [
        {"name": "dead", "context": {"cluster": "dead", "user": user}},
        {"name": "live", "context": {"cluster": live["name"], "user": user}},
    ]
    document["current-context"] = "dead"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    env = {
        "CRUSOE_ACCESS_KEY": "AKID",
        "CRUSOE_SECRET_KEY": "HrbZ3VTUb2YNAq53Md1EsA",
        "REGISTRY_URL": "registry.us-east1-a.ccr.crusoecloudcompute.com",
        "REGISTRY_USERNAME": "ops@example.com",
        "TARGET_NAMESPACES": namespace,
        "KUBECONFIG": str(path),
    }
    live_clients = connect(load_settings({**env, "KUBE_CONTEXT": "live"}), with_registry=False)
    dead_clients = connect(load_settings(env), with_registry=False)
    try:
        assert live_clients.targets[0].connect().read_secret(namespace, "absent") is None
        with pytest.raises(KubeError, match="cannot reach the API server"):
            dead_clients.targets[0].connect().read_secret(namespace, "absent")
    finally:
        live_clients.close()
        dead_clients.close()
