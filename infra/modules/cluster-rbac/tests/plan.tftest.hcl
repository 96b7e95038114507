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
  # The Events rule has no resourceNames (null, which the mocked provider plans as unknown): compare names only on
  # the secret rules, and check the rest by group, resource and verb.
  assert {
    condition     = alltrue(flatten([for role in kubernetes_role_v1.this : [for rule in role.rule : toset(rule.resource_names) == toset(["crusoe-image-pull-secrets"]) if contains(rule.resources, "secrets")]]))
    error_message = "Every secret rule is narrowed to the one pull secret by name."
  }
  assert {
    condition     = alltrue(flatten([for role in kubernetes_role_v1.this : [for rule in role.rule : toset(rule.resources) == toset(["events"]) && toset(rule.verbs) == toset(["create"]) && toset(rule.api_groups) == toset(["events.k8s.io"]) if !contains(rule.resources, "secrets")]]))
    error_message = "Besides the secret, only Events may be created (no read, update or delete of events)."
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
    condition     = alltrue([for rule in kubernetes_role_v1.this["ml"].rule : toset(rule.resource_names) == toset(["pull"]) if contains(rule.resources, "secrets")]) && kubernetes_role_binding_v1.this["ml"].subject[0].namespace == "ops"
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

run "self_renewal_is_off_by_default" {
  command = plan

  assert {
    condition     = length(kubernetes_role_v1.self_renewal) == 0 && length(kubernetes_role_binding_v1.self_renewal) == 0
    error_message = "No token request permission unless self_renewal is set."
  }
  assert {
    condition     = alltrue(flatten([for role in kubernetes_role_v1.this : [for rule in role.rule : !contains(rule.resources, "serviceaccounts/token")]]))
    error_message = "The per-namespace Roles never grant token requests."
  }
}

run "self_renewal_grants_token_requests_for_its_own_name_in_its_own_namespace" {
  command = plan

  variables {
    self_renewal    = true
    service_account = { name = "rotator", namespace = "ops" }
  }

  assert {
    condition     = kubernetes_role_v1.self_renewal[0].metadata[0].namespace == "ops" && kubernetes_role_v1.self_renewal[0].metadata[0].name == "rotator-self-renewal"
    error_message = "The self-renewal Role lives in the ServiceAccount's own namespace."
  }
  assert {
    condition     = length(kubernetes_role_v1.self_renewal[0].rule) == 1 && toset(kubernetes_role_v1.self_renewal[0].rule[0].resources) == toset(["serviceaccounts/token"]) && toset(kubernetes_role_v1.self_renewal[0].rule[0].verbs) == toset(["create"]) && toset(kubernetes_role_v1.self_renewal[0].rule[0].resource_names) == toset(["rotator"])
    error_message = "Only create on serviceaccounts/token, narrowed to the account's own name."
  }
  assert {
    condition     = kubernetes_role_binding_v1.self_renewal[0].subject[0].name == "rotator" && kubernetes_role_binding_v1.self_renewal[0].subject[0].namespace == "ops" && kubernetes_role_binding_v1.self_renewal[0].role_ref[0].name == "rotator-self-renewal"
    error_message = "The binding gives the self-renewal Role to the rotator's own ServiceAccount."
  }
}
