"""The development platform: what the tests, the demo and the bench run the rotator against.

A real etcd + kube-apiserver control plane built from the Go module proxy, the Crusoe API emulator built from the
vendored Swagger files, the Secret Manager / metadata server, a helper that serves the function as a real
``functions-framework`` process, the demo, and the pytest plugin with the cluster fixtures.
"""

from pathlib import Path

#: The repository's root folder: everything the platform reads lives below it.
REPO_ROOT = Path(__file__).resolve().parent.parent
