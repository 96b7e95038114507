locals {
  # Without groups: one job named like the function, with an empty body (the function rotates every cluster).
  # With groups: one job per group, <name>-<group>, whose body names its clusters. Same function, same invoker.
  scheduler_jobs = length(var.groups) == 0 ? {
    (local.ungrouped_job) = { name = var.name, cron = var.schedule.cron, paused = var.schedule.paused, body = null }
    } : {
    for group, spec in var.groups : group => {
      name   = "${var.name}-${group}"
      cron   = coalesce(spec.schedule, var.schedule.cron)
      paused = coalesce(spec.paused, var.schedule.paused)
      body   = jsonencode({ clusters = spec.clusters })
    }
  }
  ungrouped_job = "default"
}

# The one job of earlier versions of the module keeps its state under the ungrouped key.
moved {
  from = google_cloud_scheduler_job.this
  to   = google_cloud_scheduler_job.this["default"]
}

resource "google_cloud_scheduler_job" "this" {
  for_each = local.scheduler_jobs

  name        = each.value.name
  project     = var.project_id
  region      = var.region
  description = each.value.body == null ? "Triggers a rotation of the Crusoe registry pull secret." : "Triggers a rotation of the Crusoe registry pull secret for group ${each.key}."
  schedule    = each.value.cron
  time_zone   = var.schedule.time_zone
  paused      = each.value.paused
  # A margin above the function's own timeout (main.tf): a slow rotation is never retried while it still runs.
  attempt_deadline = local.attempt_deadline

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
    body        = each.value.body == null ? null : base64encode(each.value.body)
    headers     = each.value.body == null ? null : { "Content-Type" = "application/json" }

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
