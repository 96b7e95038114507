"""Raw capacity: exactly the Kubernetes requests a rotation needs, with no rotation logic around them.

Per namespace a rotation needs one read (to keep other entries of the docker config and to make the write
conditional) and one server-side apply PATCH. This client sends just those, from a thread pool over one
pooled keep-alive session, with the apply body prepared before the clock starts: the practical limit of
this apiserver on this machine for that request mix, which the rotation is compared against.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter

FIELD_MANAGER = "bench-raw-capacity"


@dataclass(frozen=True)
class RawTarget:
    """The API server, the identity to send as, and the secret to write in every namespace."""

    server: str
    ca_file: Path
    token: str
    secret_name: str


class RawClient:
    """A tight concurrent GET + apply-PATCH client; ``run`` can be called repeatedly."""

    def __init__(self, target: RawTarget, concurrency: int) -> None:
        self._target = target
        self._concurrency = concurrency
        self._session = requests.Session()
        self._session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, pool_block=True))
        self._session.trust_env = False  # loopback only: no proxy, and no REQUESTS_CA_BUNDLE over our CA
        self._session.verify = str(target.ca_file)
        self._session.headers["Authorization"] = f"Bearer {target.token}"
        self._session.headers["Accept"] = "application/json"

    def close(self) -> None:
        """Release the pooled connections."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _one(self, namespace: str, template: dict[str, Any]) -> None:
        url = f"{self._target.server}/api/v1/namespaces/{namespace}/secrets/{self._target.secret_name}"
        read = self._session.get(url, timeout=30)
        if read.status_code not in (HTTPStatus.OK, HTTPStatus.NOT_FOUND):
            read.raise_for_status()
        metadata: dict[str, Any] = {**template["metadata"], "namespace": namespace}
        if read.status_code == HTTPStatus.OK:
            metadata["resourceVersion"] = read.json()["metadata"]["resourceVersion"]
        body = {**template, "metadata": metadata}
        write = self._session.patch(
            url,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            data=json.dumps(body),
            headers={"Content-Type": "application/apply-patch+yaml"},
            timeout=30,
        )
        write.raise_for_status()

    def run(self, namespaces: list[str], template: dict[str, Any]) -> float:
        """Read and write every namespace with ``template``; return the wall-clock seconds.

        Pass a template with new content each run, as a rotation has a new token each run: an apply
        that changes nothing is answered without writing to etcd, which would flatter the raw figure.
        """
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="raw") as pool:
            for _ in pool.map(lambda namespace: self._one(namespace, template), namespaces):
                pass
        return time.perf_counter() - started
