"""The infra tier checks the kubeconfig script and the RBAC on the real control plane: load its fixtures."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("devkit.pytest_plugin")
