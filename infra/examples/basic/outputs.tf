output "crusoe_credentials_secret_id" {
  description = "Secret to add the Crusoe credentials to with `gcloud secrets versions add`."
  value       = module.rotator.crusoe_credentials_secret_id
}

output "function_url" {
  description = "URL of the function (also the OIDC audience)."
  value       = module.rotator.function_url
}

output "invoker_service_account_email" {
  description = "Service account to impersonate for a manual invocation."
  value       = module.rotator.invoker_service_account_email
}

output "kubeconfig_secret_id" {
  description = "Secret to add the rotator's kubeconfig to (make kubeconfig SECRET=... does it)."
  value       = module.rotator.kubeconfig_secret_id
}

output "scheduler_job_name" {
  description = "Job to trigger with `gcloud scheduler jobs run` (null with groups: see scheduler_job_names)."
  value       = module.rotator.scheduler_job_name
}

output "scheduler_job_names" {
  description = "Scheduler job per group (\"default\" without groups)."
  value       = module.rotator.scheduler_job_names
}

output "service_account_name" {
  description = "Kubernetes ServiceAccount of the rotator."
  value       = module.cluster_rbac.service_account_name
}

output "service_account_namespace" {
  description = "Namespace of the rotator's Kubernetes ServiceAccount."
  value       = module.cluster_rbac.service_account_namespace
}
