output "role_namespaces" {
  description = "Namespaces that hold a Role and a RoleBinding for the rotator."
  value       = sort([for r in kubernetes_role_v1.this : r.metadata[0].namespace])
}

output "service_account_name" {
  description = "Name of the rotator's ServiceAccount (pass it to infra/tools/make_kubeconfig.py)."
  value       = kubernetes_service_account_v1.this.metadata[0].name
}

output "service_account_namespace" {
  description = "Namespace of the rotator's ServiceAccount."
  value       = kubernetes_service_account_v1.this.metadata[0].namespace
}
