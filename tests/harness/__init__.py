"""Test infrastructure: a real etcd + kube-apiserver control plane built from source, and helpers."""
