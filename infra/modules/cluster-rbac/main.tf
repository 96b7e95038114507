locals {
  # The one source of truth shared with infra/rbac/render.py (the plain manifests for kubectl users).
  rbac       = jsondecode(file("${path.module}/rules.json"))
  labels     = merge(local.rbac.labels, var.labels)
  namespaces = var.all_namespaces ? toset([]) : toset(var.namespaces)

  # Which `when` values of rules.json this configuration grants (see its description).
  service_account_mode = length(var.service_accounts) == 0 ? "none" : (contains(var.service_accounts, "*") ? "all_service_accounts" : "named_service_accounts")
  active               = ["always", local.service_account_mode, var.all_namespaces ? "namespace_selection" : "none", var.self_renewal ? "self_renewal" : "none"]
  names                = { secret_name = [var.secret_name], service_accounts = var.service_accounts, own_name = [var.service_account.name] }
  namespace_rules      = [for rule in local.rbac.rules : rule if contains(local.active, rule.when)]
  cluster_rules        = [for rule in local.rbac.cluster_rules : rule if contains(local.active, rule.when)]
  own_namespace_rules  = [for rule in local.rbac.own_namespace_rules : rule if contains(local.active, rule.when)]
  cluster_role_name    = "${var.service_account.name}-${var.service_account.namespace}"
}

resource "kubernetes_service_account_v1" "this" {
  metadata {
    name      = var.service_account.name
    namespace = var.service_account.namespace
    labels    = local.labels
  }
  # No pod runs as this account: the rotator uses a bound token made by `kubectl create token`.
  automount_service_account_token = false
}

resource "kubernetes_role_v1" "this" {
  for_each = local.namespaces

  metadata {
    name      = var.service_account.name
    namespace = each.value
    labels    = local.labels
  }

  dynamic "rule" {
    for_each = local.namespace_rules
    content {
      api_groups     = rule.value.api_groups
      resources      = rule.value.resources
      verbs          = rule.value.verbs
      resource_names = rule.value.narrow_to == null ? null : local.names[rule.value.narrow_to]
    }
  }
}

resource "kubernetes_role_binding_v1" "this" {
  for_each = local.namespaces

  metadata {
    name      = var.service_account.name
    namespace = each.value
    labels    = local.labels
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role_v1.this[each.key].metadata[0].name
  }

  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account_v1.this.metadata[0].name
    namespace = kubernetes_service_account_v1.this.metadata[0].namespace
  }
}

# Namespaces chosen by glob, '*' or label selector: the same rules in every namespace (still narrowed to the
# one secret name), plus list on namespaces. Only in that mode.
resource "kubernetes_cluster_role_v1" "this" {
  count = var.all_namespaces ? 1 : 0

  metadata {
    name   = local.cluster_role_name
    labels = local.labels
  }

  dynamic "rule" {
    for_each = concat(local.namespace_rules, local.cluster_rules)
    content {
      api_groups     = rule.value.api_groups
      resources      = rule.value.resources
      verbs          = rule.value.verbs
      resource_names = rule.value.narrow_to == null ? null : local.names[rule.value.narrow_to]
    }
  }
}

resource "kubernetes_cluster_role_binding_v1" "this" {
  count = var.all_namespaces ? 1 : 0

  metadata {
    name   = local.cluster_role_name
    labels = local.labels
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "ClusterRole"
    name      = kubernetes_cluster_role_v1.this[0].metadata[0].name
  }

  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account_v1.this.metadata[0].name
    namespace = kubernetes_service_account_v1.this.metadata[0].namespace
  }
}

# OPT-IN (self_renewal, the function's RENEW_KUBECONFIG): in the ServiceAccount's own namespace only, create on
# serviceaccounts/token narrowed to its own name, so the function can renew its own token and no other account's.
resource "kubernetes_role_v1" "self_renewal" {
  count = length(local.own_namespace_rules) > 0 ? 1 : 0

  metadata {
    name      = "${var.service_account.name}-self-renewal"
    namespace = kubernetes_service_account_v1.this.metadata[0].namespace
    labels    = local.labels
  }

  dynamic "rule" {
    for_each = local.own_namespace_rules
    content {
      api_groups     = rule.value.api_groups
      resources      = rule.value.resources
      verbs          = rule.value.verbs
      resource_names = rule.value.narrow_to == null ? null : local.names[rule.value.narrow_to]
    }
  }
}

resource "kubernetes_role_binding_v1" "self_renewal" {
  count = length(local.own_namespace_rules) > 0 ? 1 : 0

  metadata {
    name      = "${var.service_account.name}-self-renewal"
    namespace = kubernetes_service_account_v1.this.metadata[0].namespace
    labels    = local.labels
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role_v1.self_renewal[0].metadata[0].name
  }

  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account_v1.this.metadata[0].name
    namespace = kubernetes_service_account_v1.this.metadata[0].namespace
  }
}
