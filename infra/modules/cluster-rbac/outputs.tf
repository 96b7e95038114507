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

output "cluster_role_name" {
  description = "Name of the ClusterRole (and its binding) when all_namespaces is set, else null."
  value       = var.all_namespaces ? kubernetes_cluster_role_v1.this[0].metadata[0].name : null
}

output "self_renewal_role_name" {
  description = "Name of the Role (and its binding) in the ServiceAccount's namespace that lets it renew its own token, or null without self_renewal."
  value       = var.self_renewal ? kubernetes_role_v1.self_renewal[0].metadata[0].name : null
}
