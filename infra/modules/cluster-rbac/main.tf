locals {
  # The one source of truth shared with infra/rbac/render.py (the plain manifests for kubectl users).
  rbac       = jsondecode(file("${path.module}/rules.json"))
  labels     = merge(local.rbac.labels, var.labels)
  namespaces = toset(var.namespaces)
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
    for_each = local.rbac.rules
    content {
      api_groups     = rule.value.api_groups
      resources      = rule.value.resources
      verbs          = rule.value.verbs
      resource_names = rule.value.narrow_to_secret_name ? [var.secret_name] : null
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
