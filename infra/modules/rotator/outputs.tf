output "build_service_account_email" {
  description = "Email of the service account Cloud Build builds the function with."
  value       = google_service_account.build.email
}

output "crusoe_credentials_secret_id" {
  description = "Resource id (projects/P/secrets/S) of the Crusoe credentials secret; add its versions with gcloud."
  value       = "projects/${var.project_id}/secrets/${local.secret_ids.crusoe_credentials}"
}

output "crusoe_credentials_secret_version" {
  description = "Version name the function reads the Crusoe credentials from (CRUSOE_CREDENTIALS_SECRET)."
  value       = local.secret_versions.crusoe_credentials
}

output "function_name" {
  description = "Name of the Cloud Function."
  value       = google_cloudfunctions2_function.this.name
}

output "function_url" {
  description = "HTTPS URL of the function; also the audience of the scheduler's OIDC token."
  value       = google_cloudfunctions2_function.this.url
}

output "invoker_service_account_email" {
  description = "Email of the service account whose OIDC token invokes the function."
  value       = google_service_account.invoker.email
}

output "kubeconfig_secret_id" {
  description = "Resource id (projects/P/secrets/S) of the kubeconfig secret; add its versions with gcloud."
  value       = "projects/${var.project_id}/secrets/${local.secret_ids.kubeconfig}"
}

output "kubeconfig_secret_version" {
  description = "Version name the function reads the kubeconfig from (KUBECONFIG_SECRET)."
  value       = local.secret_versions.kubeconfig
}

output "runtime_service_account_email" {
  description = "Email of the service account the function runs as."
  value       = google_service_account.runtime.email
}

output "scheduler_job_name" {
  description = "Name of the Cloud Scheduler job (for `gcloud scheduler jobs run`) when groups is empty; null with groups (see scheduler_job_names)."
  value       = length(var.groups) == 0 ? google_cloud_scheduler_job.this[local.ungrouped_job].name : null
}

output "scheduler_job_names" {
  description = "Cloud Scheduler job name per group (the key \"default\" when groups is empty)."
  value       = { for key, job in google_cloud_scheduler_job.this : key => job.name }
}

output "dashboard_id" {
  description = "Id of the Cloud Monitoring dashboard (null when monitoring.enable = false)."
  value       = try(google_monitoring_dashboard.this[0].id, null)
}

output "alert_policy_names" {
  description = "Names of the alert policies by purpose (rotation_failed, no_success, token_expiry, status_unhealthy)."
  value       = local.alert_policy_names
}

output "source_object_name" {
  description = "Name of the uploaded source archive; it carries the hash of the function's code and requirements."
  value       = google_storage_bucket_object.source.name
}
