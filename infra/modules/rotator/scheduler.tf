resource "google_cloud_scheduler_job" "this" {
  name        = var.name
  project     = var.project_id
  region      = var.region
  description = "Triggers a rotation of the Crusoe registry pull secret."
  schedule    = var.schedule.cron
  time_zone   = var.schedule.time_zone
  paused      = var.schedule.paused
  # The scheduler waits as long as the function may run, so a slow rotation is not retried while it still runs.
  attempt_deadline = "${var.function.timeout_seconds}s"

  retry_config {
    retry_count          = var.schedule.retry_count
    min_backoff_duration = "${var.schedule.min_backoff_seconds}s"
    max_backoff_duration = "${var.schedule.max_backoff_seconds}s"
    max_doublings        = var.schedule.max_doublings
    max_retry_duration   = "0s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.this.url

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.this.url
    }
  }

  depends_on = [
    google_project_service.this,
    google_cloud_run_v2_service_iam_member.invoker,
  ]
}
