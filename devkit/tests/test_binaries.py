"""Unit tests of the harness's pure parts: binary resolution order and the go.mod generator (no I/O but tmp)."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import pytest

from devkit import binaries, gomod

if TYPE_CHECKING:
    from pathlib import Path


def _fake(path: Path, version_line: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def no_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(binaries, "BIN_CACHE_DIR", tmp_path / "cache")


def test_resolve_prefers_explicit_variable(tmp_path, no_cache):
    explicit = _fake(tmp_path / "x" / "kube-apiserver", "Kubernetes v1.36.0")
    _fake(tmp_path / "assets" / "kube-apiserver", "Kubernetes v1.35.0")
    env = {"KUBE_APISERVER_BIN": str(explicit), "KUBEBUILDER_ASSETS": str(tmp_path / "assets"), "PATH": ""}

    found = binaries.resolve(binaries.KUBE_APISERVER, env, allow_build=False)

    assert (found.path, found.version, found.source) == (explicit, "v1.36.0", "KUBE_APISERVER_BIN")


def test_resolve_explicit_variable_that_is_not_executable_is_an_error(tmp_path, no_cache):
    with pytest.raises(binaries.BinaryNotFoundError, match="ETCD_BIN"):
        binaries.resolve(binaries.ETCD, {"ETCD_BIN": str(tmp_path / "missing"), "PATH": ""}, allow_build=False)


def test_resolve_uses_kubebuilder_assets_then_path(tmp_path, no_cache):
    _fake(tmp_path / "assets" / "etcd", "etcd Version: 3.6.5")
    _fake(tmp_path / "bin" / "etcd", "etcd Version: 3.7.1")

    from_assets = binaries.resolve(
        binaries.ETCD, {"KUBEBUILDER_ASSETS": str(tmp_path / "assets"), "PATH": str(tmp_path / "bin")}
    )
    from_path = binaries.resolve(binaries.ETCD, {"PATH": str(tmp_path / "bin")})

    assert (from_assets.source, from_assets.version) == ("KUBEBUILDER_ASSETS", "v3.6.5")
    assert (from_path.source, from_path.version) == ("PATH", "v3.7.1")


def test_resolve_skips_too_old_etcd_on_path_and_names_all_ways(tmp_path, no_cache):
    _fake(tmp_path / "bin" / "etcd", "etcd Version: 3.4.23")

    with pytest.raises(binaries.BinaryNotFoundError) as raised:
        binaries.resolve(binaries.ETCD, {"PATH": str(tmp_path / "bin")}, allow_build=False)

    message = str(raised.value)
    for way in ("ETCD_BIN", "KUBEBUILDER_ASSETS", "on PATH", "Go >= 1.26"):
        assert way in message


def test_resolve_refuses_too_old_explicit_etcd(tmp_path, no_cache):
    old = _fake(tmp_path / "etcd", "etcd Version: 3.5.12")

    with pytest.raises(binaries.BinaryNotFoundError, match=r"3\.5\.13"):
        binaries.resolve(binaries.ETCD, {"ETCD_BIN": str(old), "PATH": ""}, allow_build=False)


def test_resolve_uses_the_version_keyed_cache(tmp_path, no_cache):
    cached = _fake(binaries.cached_path(binaries.ETCD), "etcd Version: 3.7.3")

    found = binaries.resolve(binaries.ETCD, {"PATH": ""}, allow_build=False)

    assert (found.path, found.source) == (cached, "cache")
    assert cached.parent.name == f"etcd-{binaries.pinned_version(binaries.ETCD)}"


def test_pinned_versions_come_from_the_wrapper_modules():
    assert binaries.pinned_version(binaries.KUBE_APISERVER).startswith("v1.")
    assert binaries.pinned_version(binaries.ETCD).startswith("v3.")


def test_ldflags_set_the_release_version():
    flags = binaries._ldflags(binaries.KUBE_APISERVER, "v1.37.2")

    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.37.2" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=37" in flags


def test_gomod_staging_modules_are_read_from_the_replace_block():
    upstream = (
        "module k8s.io/kubernetes\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\n"
        "replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n"
        "\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n"
    )

    assert gomod.staging_modules(upstream) == ["k8s.io/api", "k8s.io/client-go"]
    assert gomod.staging_version("v1.37.2") == "v0.37.2"


def test_gomod_render_pins_served_and_stubs_the_rest():
    text = gomod.render_go_mod("v1.37.2", {"k8s.io/api": "v0.37.2", "k8s.io/sample": "./stubs/k8s.io/sample"})

    assert "require k8s.io/kubernetes v1.37.2" in text
    assert "\tk8s.io/api => k8s.io/api v0.37.2" in text
    assert "\tk8s.io/sample => ./stubs/k8s.io/sample" in text


def test_gomod_rejects_a_non_release_version():
    with pytest.raises(gomod.GoModError):
        gomod.staging_version("v1.37.0-rc.1")
