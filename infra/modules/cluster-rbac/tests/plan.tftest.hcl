# Plan-level checks of the cluster RBAC with a mocked kubernetes provider (no cluster needed).
mock_provider "kubernetes" {
  override_during = plan
}

variables {
  namespaces = ["team-a", "team-b", "team-a"]
}

run "one_role_and_binding_per_namespace_narrowed_to_the_secret" {
  command = plan

  assert {
    condition     = toset(keys(kubernetes_role_v1.this)) == toset(["team-a", "team-b"]) && toset(keys(kubernetes_role_binding_v1.this)) == toset(["team-a", "team-b"])
    error_message = "One Role and one RoleBinding per distinct namespace."
  }
  assert {
    condition     = alltrue([for role in kubernetes_role_v1.this : alltrue([for rule in role.rule : toset(rule.resources) == toset(["secrets"]) && toset(rule.resource_names) == toset(["crusoe-image-pull-secrets"])])])
    error_message = "Every rule is on secrets and narrowed to the one pull secret by name."
  }
  assert {
    condition     = alltrue([for role in kubernetes_role_v1.this : toset(flatten([for rule in role.rule : tolist(rule.verbs)])) == toset(["get", "patch", "create"])])
    error_message = "The verbs are get, patch and create: no update, list, watch or delete."
  }
  assert {
    condition     = alltrue([for b in kubernetes_role_binding_v1.this : b.subject[0].kind == "ServiceAccount" && b.subject[0].name == "ccr-pull-secret-rotator" && b.subject[0].namespace == "crusoe-system" && b.role_ref[0].kind == "Role"])
    error_message = "Each binding gives its namespace's Role to the rotator's ServiceAccount in crusoe-system."
  }
  assert {
    condition     = kubernetes_service_account_v1.this.automount_service_account_token == false
    error_message = "No pod ever mounts the rotator's token."
  }
}

run "custom_secret_name_and_account" {
  command = plan

  variables {
    namespaces      = ["ml"]
    secret_name     = "pull"
    service_account = { name = "rotator", namespace = "ops" }
  }

  assert {
    condition     = alltrue([for rule in kubernetes_role_v1.this["ml"].rule : toset(rule.resource_names) == toset(["pull"])]) && kubernetes_role_binding_v1.this["ml"].subject[0].namespace == "ops"
    error_message = "secret_name and service_account flow into the Role and the binding."
  }
}

run "bad_namespace_is_refused" {
  command = plan

  variables {
    namespaces = ["Team_A"]
  }

  expect_failures = [var.namespaces]
}
