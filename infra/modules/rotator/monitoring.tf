# Monitoring built on the function's structured log lines (one JSON object per line on stdout, in jsonPayload):
# - event = "rotation_summary": one per run; status ("ok"|"failed"), dry_run, namespaces_failed, revoked_count,
#   duration_ms;
# - event = "cluster_summary": one per cluster and run; cluster, status, namespaces_failed, earliest_expiry_seconds;
# - event = "status_summary": one per GET; earliest_expiry_seconds, credential_expiry_seconds (the earliest expiry of
#   the kubeconfigs' own credentials), at_risk;
# - event = "credential_renewal": one per cluster and run with kubeconfig_renewal; cluster, result, version, disabled.
# See docs/operations.md for what each alert means and what to do.
locals {
  monitoring = var.monitoring.enable
  uptime     = var.monitoring.enable && var.monitoring.uptime_check

  # The function's own default margin is a quarter of the token lifetime (EXPIRY_WARNING_HOURS).
  expiry_warning_seconds = floor(coalesce(var.monitoring.expiry_warning_hours, var.config.token_expiration_hours / 4) * 3600)

  log_source   = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name}\""
  run_lines    = "${local.log_source} AND jsonPayload.event=\"rotation_summary\""
  cluster_line = "${local.log_source} AND jsonPayload.event=\"cluster_summary\""
  expiry_lines = "${local.log_source} AND (jsonPayload.event=\"cluster_summary\" OR jsonPayload.event=\"status_summary\")"
  status_lines = "${local.log_source} AND jsonPayload.event=\"status_summary\""
  renewal_line = "${local.log_source} AND jsonPayload.event=\"credential_renewal\""

  # The kubeconfig credential's margin is the function's CREDENTIAL_WARNING_HOURS (config.credential_warning_hours).
  credential_warning_seconds = var.config.credential_warning_hours * 3600

  # Log-based metrics: counters count matching lines, distributions take a number from each.
  metrics = {
    rotations = {
      description = "Rotation runs by outcome (status) and whether they were dry runs."
      filter      = local.run_lines
      value       = null
      unit        = "1"
      labels      = tomap({ status = "jsonPayload.status", dry_run = "jsonPayload.dry_run" })
      buckets     = null
    }
    tokens_revoked = {
      description = "Crusoe tokens revoked per run."
      filter      = local.run_lines
      value       = "jsonPayload.revoked_count"
      unit        = "1"
      labels      = tomap({})
      buckets     = [0, 1, 2, 3, 5, 10, 20, 50]
    }
    run_duration = {
      description = "Duration of a run."
      filter      = local.run_lines
      value       = "jsonPayload.duration_ms"
      unit        = "ms"
      labels      = tomap({})
      buckets     = [0, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000, 300000, 600000, 1200000, 1800000]
    }
    cluster_rotations = {
      description = "Per cluster: rotations by outcome."
      filter      = local.cluster_line
      value       = null
      unit        = "1"
      labels      = tomap({ cluster = "jsonPayload.cluster", status = "jsonPayload.status" })
      buckets     = null
    }
    namespaces_failed = {
      description = "Per cluster: namespaces that failed in a run."
      filter      = local.cluster_line
      value       = "jsonPayload.namespaces_failed"
      unit        = "1"
      labels      = tomap({ cluster = "jsonPayload.cluster" })
      buckets     = [0, 1, 2, 5, 10, 20, 50, 100, 500, 1000]
    }
    earliest_expiry = {
      description = "Per cluster: seconds until the earliest token expiry among its targets (after a run, and at every status call)."
      filter      = local.expiry_lines
      value       = "jsonPayload.earliest_expiry_seconds"
      unit        = "s"
      labels      = tomap({ cluster = "jsonPayload.cluster" })
      # Hourly steps where it matters (the last day), then days, up to 90 days.
      buckets = [for h in [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 36, 48, 72, 96, 168, 336, 720, 1440, 2160] : h * 3600]
    }
    credential_expiry = {
      description = "Seconds until the earliest expiry of the kubeconfigs' own credentials (ServiceAccount token or client certificate), at every status call."
      filter      = local.status_lines
      value       = "jsonPayload.credential_expiry_seconds"
      unit        = "s"
      labels      = tomap({})
      buckets     = [for h in [0, 1, 6, 12, 24, 48, 72, 120, 168, 336, 720, 1440, 2160, 4320, 8760] : h * 3600]
    }
    credential_at_risk = {
      description = "Status lines whose earliest kubeconfig credential expiry is inside CREDENTIAL_WARNING_HOURS."
      filter      = "${local.status_lines} AND jsonPayload.credential_expiry_seconds < ${local.credential_warning_seconds}"
      value       = null
      unit        = "1"
      labels      = tomap({})
      buckets     = null
    }
    renewals = {
      description = "Per cluster: kubeconfig renewal results (renewed, not-due, not-renewable, failed)."
      filter      = local.renewal_line
      value       = null
      unit        = "1"
      labels      = tomap({ cluster = "jsonPayload.cluster", result = "jsonPayload.result" })
      buckets     = null
    }
    expiry_at_risk = {
      description = "Summary lines whose earliest token expiry is inside the warning margin."
      filter      = "${local.expiry_lines} AND jsonPayload.earliest_expiry_seconds < ${local.expiry_warning_seconds}"
      value       = null
      unit        = "1"
      labels      = tomap({ cluster = "jsonPayload.cluster" })
      buckets     = null
    }
  }
  metric_types = { for key, m in google_logging_metric.this : key => "logging.googleapis.com/user/${m.name}" }

  alert_policy_names = merge(
    { for key, policy in google_monitoring_alert_policy.logs : key => policy.name },
    { for policy in google_monitoring_alert_policy.status_unhealthy : "status_unhealthy" => policy.name },
  )
}

resource "google_logging_metric" "this" {
  for_each = { for key, metric in local.metrics : key => metric if local.monitoring }

  project     = var.project_id
  name        = "${var.name}/${each.key}"
  description = each.value.description
  filter      = each.value.filter

  value_extractor = each.value.value == null ? null : "EXTRACT(${each.value.value})"
  label_extractors = {
    for label, field in each.value.labels : label => "EXTRACT(${field})"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = each.value.value == null ? "INT64" : "DISTRIBUTION"
    unit        = each.value.unit

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  dynamic "bucket_options" {
    for_each = each.value.buckets == null ? [] : [each.value.buckets]
    content {
      explicit_buckets {
        bounds = bucket_options.value
      }
    }
  }

  depends_on = [google_project_service.this]
}

locals {
  # Alerts on the log-based metrics: a failed run, no successful run for a while, a token close to expiry.
  log_alerts = {
    rotation_failed = {
      display_name = "${var.name}: a rotation failed"
      filter       = "metric.type=\"${try(local.metric_types.rotations, "")}\" AND resource.type=\"cloud_run_revision\" AND metric.label.status=\"failed\""
      absent       = false
      duration     = "0s"
      group_by     = ["metric.label.dry_run"]
      content      = "A rotation run logged status \"failed\". Read its rotation_summary line and the lines of the same execution id. Runbook: docs/operations.md#a-rotation-failed"
    }
    no_success = {
      display_name = "${var.name}: no successful rotation for ${var.monitoring.no_success_hours} h"
      filter       = "metric.type=\"${try(local.metric_types.rotations, "")}\" AND resource.type=\"cloud_run_revision\" AND metric.label.status=\"ok\" AND metric.label.dry_run=\"false\""
      absent       = true
      duration     = "${var.monitoring.no_success_hours * 3600}s"
      group_by     = []
      content      = "No rotation (other than dry runs) logged status \"ok\" for ${var.monitoring.no_success_hours} hours: the schedule may be paused, the function unreachable, or every run failing. Runbook: docs/operations.md#no-successful-rotation"
    }
    token_expiry = {
      display_name = "${var.name}: a pull-secret token expires within ${local.expiry_warning_seconds / 3600} h"
      filter       = "metric.type=\"${try(local.metric_types.expiry_at_risk, "")}\" AND resource.type=\"cloud_run_revision\""
      absent       = false
      duration     = "0s"
      group_by     = ["metric.label.cluster"]
      content      = "A cluster's earliest pull-secret token expires within ${local.expiry_warning_seconds / 3600} hours: image pulls fail when it does. Runbook: docs/operations.md#a-token-is-close-to-expiry"
    }
    credential_expiry = {
      display_name = "${var.name}: the rotator's kubeconfig credential expires within ${var.config.credential_warning_hours} h"
      filter       = "metric.type=\"${try(local.metric_types.credential_at_risk, "")}\" AND resource.type=\"cloud_run_revision\""
      absent       = false
      duration     = "0s"
      group_by     = []
      content      = "The ServiceAccount token or client certificate in a cluster's kubeconfig secret expires within ${var.config.credential_warning_hours} hours: every rotation of that cluster fails when it does. The status answer names it as <cluster>/credential. Runbook: docs/operations.md#the-rotators-kubeconfig-credential-is-close-to-expiry"
    }
  }
  # Only with kubeconfig_renewal: a renewal that failed (the credential alert follows if it keeps failing).
  renewal_alerts = var.kubeconfig_renewal.enable ? {
    renewal_failed = {
      display_name = "${var.name}: renewing the kubeconfig credential failed"
      filter       = "metric.type=\"${try(local.metric_types.renewals, "")}\" AND resource.type=\"cloud_run_revision\" AND metric.label.result=\"failed\""
      absent       = false
      duration     = "0s"
      group_by     = ["metric.label.cluster"]
      content      = "The function could not renew its own kubeconfig token (TokenRequest or Secret Manager refused, or the credential is not renewable). Read the credential_renewal line's detail. Runbook: docs/operations.md#renewing-the-kubeconfig-failed"
    }
  } : {}
}

resource "google_monitoring_alert_policy" "logs" {
  for_each = { for key, alert in merge(local.log_alerts, local.renewal_alerts) : key => alert if local.monitoring }

  project               = var.project_id
  display_name          = each.value.display_name
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.monitoring.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = each.value.display_name

    dynamic "condition_threshold" {
      for_each = each.value.absent ? [] : [1]
      content {
        filter          = each.value.filter
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = each.value.duration
        aggregations {
          alignment_period     = "300s"
          per_series_aligner   = "ALIGN_SUM"
          cross_series_reducer = "REDUCE_SUM"
          group_by_fields      = each.value.group_by
        }
        trigger {
          count = 1
        }
      }
    }

    dynamic "condition_absent" {
      for_each = each.value.absent ? [1] : []
      content {
        filter   = each.value.filter
        duration = each.value.duration
        aggregations {
          alignment_period     = "3600s"
          per_series_aligner   = "ALIGN_SUM"
          cross_series_reducer = "REDUCE_SUM"
        }
        trigger {
          count = 1
        }
      }
    }
  }

  documentation {
    content   = each.value.content
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [google_project_service.this]
}

# The uptime check calls the function's GET status answer (200 healthy, 503 when a target is at risk) with an
# OIDC token of Cloud Monitoring's own service agent: no secret in the check, and the function stays private
# (only this agent and the invoker account hold run.invoker on the service).
resource "google_monitoring_uptime_check_config" "status" {
  count = local.uptime ? 1 : 0

  project      = var.project_id
  display_name = "${var.name} status"
  period       = "${var.monitoring.uptime_period_seconds}s"
  timeout      = "60s"
  user_labels  = local.labels

  http_check {
    request_method = "GET"
    path           = "/"
    port           = 443
    use_ssl        = true
    validate_ssl   = true

    accepted_response_status_codes {
      status_class = "STATUS_CLASS_2XX"
    }

    service_agent_authentication {
      type = "OIDC_TOKEN"
    }
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = trimsuffix(trimprefix(google_cloudfunctions2_function.this.service_config[0].uri, "https://"), "/")
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.uptime_invoker]
}

resource "google_cloud_run_v2_service_iam_member" "uptime_invoker" {
  count = local.uptime ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
}

resource "google_monitoring_alert_policy" "status_unhealthy" {
  count = local.uptime ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: status answer unhealthy (503 or unreachable)"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.monitoring.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "${var.name} status check failing"
    condition_threshold {
      filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND metric.label.check_id=\"${google_monitoring_uptime_check_config.status[0].uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      # Longer than a rotation can run: with one instance serving one request at a time, a check that arrives
      # during a rotation may be refused, which is not a reason to page anyone.
      duration = "${ceil((var.function.timeout_seconds + 2 * var.monitoring.uptime_period_seconds) / 60) * 60}s"
      aggregations {
        alignment_period     = "${var.monitoring.uptime_period_seconds}s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.host"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "The function's GET status answer failed from more than one checker region: 503 means a target's token is inside the warning margin (the body names the targets at risk); anything else means the function is unreachable or broken. Runbook: docs/operations.md#the-status-answer-is-unhealthy"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

locals {
  # One chart per question an operator asks; the dashboard JSON is Cloud Monitoring's own format.
  charts = [
    { title = "Rotations by outcome", metric = "rotations", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group_by = ["metric.label.status", "metric.label.dry_run"], plot = "STACKED_BAR" },
    { title = "Rotations by outcome, per cluster", metric = "cluster_rotations", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group_by = ["metric.label.cluster", "metric.label.status"], plot = "STACKED_BAR" },
    { title = "Namespaces failed, per cluster", metric = "namespaces_failed", aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", group_by = ["metric.label.cluster"], plot = "LINE" },
    { title = "Tokens revoked per run", metric = "tokens_revoked", aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", group_by = [], plot = "LINE" },
    { title = "Run duration (ms, p50)", metric = "run_duration", aligner = "ALIGN_PERCENTILE_50", reducer = "REDUCE_MAX", group_by = [], plot = "LINE" },
    { title = "Time until the earliest token expiry, per cluster (seconds; warning line at the margin)", metric = "earliest_expiry", aligner = "ALIGN_PERCENTILE_05", reducer = "REDUCE_MIN", group_by = ["metric.label.cluster"], plot = "LINE" },
  ]
  dashboard = {
    displayName = "${var.name} rotations"
    mosaicLayout = {
      columns = 12
      tiles = [
        for i, chart in local.charts : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = chart.title
            xyChart = {
              dataSets = [{
                plotType = chart.plot
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${try(local.metric_types[chart.metric], "")}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = {
                      alignmentPeriod    = "3600s"
                      perSeriesAligner   = chart.aligner
                      crossSeriesReducer = chart.reducer
                      groupByFields      = chart.group_by
                    }
                  }
                }
              }]
              thresholds = chart.metric == "earliest_expiry" ? [{ value = local.expiry_warning_seconds, label = "warning margin" }] : []
            }
          }
        }
      ]
    }
  }
}

resource "google_monitoring_dashboard" "this" {
  count = local.monitoring ? 1 : 0

  project        = var.project_id
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_project_service.this]
}
