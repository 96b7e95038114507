# Plan-level checks of the rotator module with mocked providers (no credentials, no API calls): Terraform plans the
# module against the providers' real schemas and these assertions check the wiring that matters.
# Run: infra/scripts/check.sh test   (or `terraform test` in this module's directory with the providers installed).

mock_provider "google" {
  override_during = plan
}

# The project number names Google's gcf-v2-sources bucket and the Monitoring service agent.
override_data {
  target          = data.google_project.this
  override_during = plan
  values = {
    number = "123456789012"
  }
}

mock_provider "archive" {
  override_during = plan
}

mock_provider "time" {
  override_during = plan
}

# Distinct, known identities and URLs, so that "audience == URL" and "runtime != invoker" are real comparisons.
override_resource {
  target          = google_service_account.runtime
  override_during = plan
  values = {
    email  = "ccr-pull-secret-rotator-run@my-project.iam.gserviceaccount.com"
    member = "serviceAccount:ccr-pull-secret-rotator-run@my-project.iam.gserviceaccount.com"
  }
}

override_resource {
  target          = google_service_account.invoker
  override_during = plan
  values = {
    email  = "ccr-pull-secret-rotator-inv@my-project.iam.gserviceaccount.com"
    member = "serviceAccount:ccr-pull-secret-rotator-inv@my-project.iam.gserviceaccount.com"
  }
}

override_resource {
  target          = google_service_account.build
  override_during = plan
  values = {
    email  = "ccr-pull-secret-rotator-bld@my-project.iam.gserviceaccount.com"
    member = "serviceAccount:ccr-pull-secret-rotator-bld@my-project.iam.gserviceaccount.com"
    id     = "projects/my-project/serviceAccounts/ccr-pull-secret-rotator-bld@my-project.iam.gserviceaccount.com"
  }
}

override_resource {
  target          = google_cloudfunctions2_function.this
  override_during = plan
  values = {
    url = "https://europe-west1-my-project.cloudfunctions.net/ccr-pull-secret-rotator"
  }
}

variables {
  project_id = "my-project"
  region     = "europe-west1"
  config = {
    registry_url      = "registry.example.com"
    registry_username = "ops@example.com"
    target_namespaces = ["team-a", "team-b"]
  }
}

run "invoker_is_bound_to_this_service_only" {
  command = plan

  assert {
    condition     = google_cloud_run_v2_service_iam_member.invoker.name == google_cloudfunctions2_function.this.service_config[0].service
    error_message = "run.invoker must be granted on the function's own Cloud Run service."
  }
  assert {
    condition     = google_cloud_run_v2_service_iam_member.invoker.role == "roles/run.invoker" && google_cloud_run_v2_service_iam_member.invoker.member == google_service_account.invoker.member
    error_message = "Only the invoker account gets run.invoker."
  }
  assert {
    condition     = google_cloud_run_v2_service_iam_member.uptime_invoker[0].member == "serviceAccount:service-123456789012@gcp-sa-monitoring-notification.iam.gserviceaccount.com" && google_cloud_run_v2_service_iam_member.uptime_invoker[0].name == google_cloudfunctions2_function.this.service_config[0].service
    error_message = "The uptime check's service agent may invoke this service and nothing else."
  }
}

run "scheduler_signs_for_the_function_url_with_a_margin" {
  command = plan

  assert {
    condition     = length(google_cloud_scheduler_job.this) == 1 && google_cloud_scheduler_job.this["default"].name == "ccr-pull-secret-rotator"
    error_message = "Without groups there is one job, named like the function."
  }
  assert {
    condition     = google_cloud_scheduler_job.this["default"].http_target[0].oidc_token[0].audience == "https://europe-west1-my-project.cloudfunctions.net/ccr-pull-secret-rotator"
    error_message = "The OIDC audience must be the function's URL."
  }
  assert {
    condition     = google_cloud_scheduler_job.this["default"].http_target[0].uri == google_cloudfunctions2_function.this.url && google_cloud_scheduler_job.this["default"].http_target[0].oidc_token[0].service_account_email == google_service_account.invoker.email
    error_message = "The job must POST to the function URL as the invoker account."
  }
  assert {
    condition     = google_cloud_scheduler_job.this["default"].http_target[0].body == null && google_cloud_scheduler_job.this["default"].http_target[0].http_method == "POST"
    error_message = "The ungrouped job POSTs an empty body (rotate everything)."
  }
  assert {
    condition     = google_cloud_scheduler_job.this["default"].attempt_deadline == "570s" && google_cloudfunctions2_function.this.service_config[0].timeout_seconds == 540
    error_message = "The attempt deadline must be the function timeout plus 30 s."
  }
  assert {
    condition     = google_cloudfunctions2_function.this.service_config[0].environment_variables["RUN_DEADLINE_SECONDS"] == "510"
    error_message = "RUN_DEADLINE_SECONDS must be the function timeout minus 30 s."
  }
}

run "runtime_account_holds_only_secret_level_accessor_roles" {
  command = plan

  assert {
    condition     = length(google_secret_manager_secret_iam_member.runtime_accessor) == 2 && alltrue([for b in google_secret_manager_secret_iam_member.runtime_accessor : b.role == "roles/secretmanager.secretAccessor" && b.member == google_service_account.runtime.member])
    error_message = "The runtime account gets secretAccessor on each of the two secrets."
  }
  assert {
    condition     = toset([for b in google_secret_manager_secret_iam_member.runtime_accessor : b.secret_id]) == toset(["ccr-pull-secret-rotator-crusoe-credentials", "ccr-pull-secret-rotator-kubeconfig"])
    error_message = "The accessor bindings must be on exactly the module's two secrets."
  }
  assert {
    condition     = !contains([google_project_iam_member.build_log_writer.member, google_project_iam_member.build_gcf_sources_reader.member, google_cloud_run_v2_service_iam_member.invoker.member], google_service_account.runtime.member)
    error_message = "The runtime account must hold no project-level or invoker role."
  }
  assert {
    condition     = google_cloudfunctions2_function.this.service_config[0].service_account_email == google_service_account.runtime.email && google_cloudfunctions2_function.this.build_config[0].service_account == google_service_account.build.id
    error_message = "The function runs as the runtime account and builds as the build account."
  }
}

run "build_reads_exactly_the_gcf_sources_bucket" {
  command = plan

  assert {
    condition     = google_project_iam_member.build_gcf_sources_reader.role == "roles/storage.objectViewer" && google_project_iam_member.build_gcf_sources_reader.member == google_service_account.build.member
    error_message = "The build account reads the sources bucket as objectViewer."
  }
  assert {
    condition     = google_project_iam_member.build_gcf_sources_reader.condition[0].expression == "resource.name == \"projects/_/buckets/gcf-v2-sources-123456789012-europe-west1\" || resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-123456789012-europe-west1/objects/\")"
    error_message = "The grant must be conditioned on gcf-v2-sources-<project number>-<region> only."
  }
  assert {
    condition     = time_sleep.iam_propagation.create_duration == "60s"
    error_message = "The function waits 60 s for IAM to propagate."
  }
  assert {
    condition     = toset(["cloudresourcemanager.googleapis.com", "serviceusage.googleapis.com", "iam.googleapis.com", "monitoring.googleapis.com"]) == setintersection(toset(keys(google_project_service.this)), toset(["cloudresourcemanager.googleapis.com", "serviceusage.googleapis.com", "iam.googleapis.com", "monitoring.googleapis.com"]))
    error_message = "A fresh project needs Resource Manager, Service Usage, IAM and Monitoring enabled by the module."
  }
}

run "storage_and_secrets_survive_renames_and_allow_destroy" {
  command = plan

  assert {
    condition     = google_storage_bucket.source[0].name == "my-project-ccr-pull-secret-rotator-source" && google_storage_bucket.source[0].force_destroy
    error_message = "The source bucket keeps its name and never blocks destroy."
  }
  assert {
    condition     = flatten([for r in google_storage_bucket.source[0].lifecycle_rule : [for c in r.condition : c.days_since_noncurrent_time]]) == [30]
    error_message = "Noncurrent archives are deleted after 30 days (num_newer_versions never fires)."
  }
  assert {
    condition     = alltrue([for s in google_secret_manager_secret.this : s.deletion_protection && length(s.replication[0].auto) == 1])
    error_message = "Secrets are deletion-protected with automatic replication by default."
  }
  assert {
    condition     = length(google_secret_manager_secret_version.this) == 0
    error_message = "By default Terraform writes no secret value at all."
  }
}

run "bucket_name_fits_for_the_longest_inputs" {
  command = plan

  variables {
    project_id = "a-very-long-project-id-30-chr"
    name       = "a-rotator-name-of-26-chars"
  }

  assert {
    condition     = length(google_storage_bucket.source[0].name) <= 63 && startswith(google_storage_bucket.source[0].name, "a-very-long-project-id-30-chr-a-rotator-name-of-26-")
    error_message = "The bucket name must fit in 63 characters."
  }
}

run "one_scheduler_job_per_group" {
  command = plan

  variables {
    groups = {
      gpu-east = { clusters = ["east-1", "east-2"] }
      gpu-west = { clusters = ["west-1"], schedule = "30 */6 * * *", paused = true }
    }
  }

  assert {
    condition     = toset(keys(google_cloud_scheduler_job.this)) == toset(["gpu-east", "gpu-west"])
    error_message = "One job per group and no ungrouped job."
  }
  assert {
    condition     = google_cloud_scheduler_job.this["gpu-east"].name == "ccr-pull-secret-rotator-gpu-east" && google_cloud_scheduler_job.this["gpu-east"].schedule == "0 */6 * * *" && !google_cloud_scheduler_job.this["gpu-east"].paused
    error_message = "A group without its own schedule uses schedule.cron."
  }
  assert {
    condition     = google_cloud_scheduler_job.this["gpu-west"].schedule == "30 */6 * * *" && google_cloud_scheduler_job.this["gpu-west"].paused
    error_message = "A group's own schedule and paused flag win."
  }
  assert {
    condition     = jsondecode(base64decode(google_cloud_scheduler_job.this["gpu-east"].http_target[0].body)) == { clusters = ["east-1", "east-2"] } && google_cloud_scheduler_job.this["gpu-east"].http_target[0].headers["Content-Type"] == "application/json"
    error_message = "Each job POSTs {\"clusters\": [...]} as JSON."
  }
  assert {
    condition     = alltrue([for j in google_cloud_scheduler_job.this : j.http_target[0].uri == google_cloudfunctions2_function.this.url && j.http_target[0].oidc_token[0].audience == google_cloudfunctions2_function.this.url])
    error_message = "Every group's job calls the same function with the same audience."
  }
  assert {
    condition     = output.scheduler_job_name == null && output.scheduler_job_names["gpu-west"] == "ccr-pull-secret-rotator-gpu-west"
    error_message = "Outputs name every group's job."
  }
}

run "a_cluster_in_two_groups_is_refused" {
  command = plan

  variables {
    groups = {
      a = { clusters = ["east-1"] }
      b = { clusters = ["east-1"] }
    }
  }

  expect_failures = [var.groups]
}

run "monitoring_alerts_uptime_and_dashboard" {
  command = plan

  variables {
    monitoring = {
      notification_channels = ["projects/my-project/notificationChannels/42"]
    }
  }

  assert {
    condition     = toset(keys(google_monitoring_alert_policy.logs)) == toset(["rotation_failed", "no_success", "token_expiry", "credential_expiry"]) && length(google_monitoring_alert_policy.status_unhealthy) == 1
    error_message = "Alerts: a rotation failed, no success for a while, a token close to expiry, the kubeconfig credential close to expiry, an unhealthy status answer."
  }
  assert {
    condition     = alltrue([for p in concat(values(google_monitoring_alert_policy.logs), google_monitoring_alert_policy.status_unhealthy) : p.notification_channels == tolist(["projects/my-project/notificationChannels/42"])])
    error_message = "Every alert notifies the channels passed in."
  }
  assert {
    condition     = google_monitoring_alert_policy.logs["no_success"].conditions[0].condition_absent[0].duration == "46800s" && strcontains(google_monitoring_alert_policy.logs["no_success"].conditions[0].condition_absent[0].filter, "metric.label.status=\"ok\" AND metric.label.dry_run=\"false\"")
    error_message = "No success = absence of non-dry status ok for 13 h."
  }
  assert {
    condition     = google_logging_metric.this["rotations"].filter == "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"ccr-pull-secret-rotator\" AND jsonPayload.event=\"rotation_summary\"" && google_logging_metric.this["rotations"].label_extractors == tomap({ status = "EXTRACT(jsonPayload.status)", dry_run = "EXTRACT(jsonPayload.dry_run)" })
    error_message = "The rotations metric counts rotation_summary lines by status and dry_run."
  }
  assert {
    condition     = google_logging_metric.this["earliest_expiry"].value_extractor == "EXTRACT(jsonPayload.earliest_expiry_seconds)" && google_logging_metric.this["earliest_expiry"].label_extractors == tomap({ cluster = "EXTRACT(jsonPayload.cluster)" })
    error_message = "Earliest expiry is read per cluster from earliest_expiry_seconds."
  }
  assert {
    condition     = endswith(google_logging_metric.this["expiry_at_risk"].filter, "jsonPayload.earliest_expiry_seconds < 10800")
    error_message = "The at-risk margin defaults to a quarter of the 12 h token lifetime (3 h)."
  }
  assert {
    condition     = google_logging_metric.this["credential_expiry"].value_extractor == "EXTRACT(jsonPayload.credential_expiry_seconds)" && endswith(google_logging_metric.this["credential_at_risk"].filter, "jsonPayload.event=\"status_summary\" AND jsonPayload.credential_expiry_seconds < 604800")
    error_message = "The kubeconfig credential's expiry is read from status_summary lines, at risk inside config.credential_warning_hours (7 days by default)."
  }
  assert {
    condition     = google_cloudfunctions2_function.this.service_config[0].environment_variables["CREDENTIAL_WARNING_HOURS"] == "168"
    error_message = "The function and the alert share the credential margin."
  }
  assert {
    condition     = google_logging_metric.this["tokens_revoked"].value_extractor == "EXTRACT(jsonPayload.revoked_count)" && google_logging_metric.this["namespaces_failed"].value_extractor == "EXTRACT(jsonPayload.namespaces_failed)" && google_logging_metric.this["run_duration"].value_extractor == "EXTRACT(jsonPayload.duration_ms)"
    error_message = "Metrics read the summary lines' stable field names."
  }
  assert {
    condition     = google_monitoring_uptime_check_config.status[0].http_check[0].service_agent_authentication[0].type == "OIDC_TOKEN" && google_monitoring_uptime_check_config.status[0].http_check[0].request_method == "GET" && google_monitoring_uptime_check_config.status[0].http_check[0].accepted_response_status_codes[0].status_class == "STATUS_CLASS_2XX"
    error_message = "The uptime check GETs the status with the service agent's OIDC token and wants a 2xx (503 = at risk)."
  }
  assert {
    condition     = length(jsondecode(google_monitoring_dashboard.this[0].dashboard_json).mosaicLayout.tiles) == 6
    error_message = "The dashboard has its six charts."
  }
}

run "monitoring_can_be_switched_off" {
  command = plan

  variables {
    monitoring = { enable = false }
  }

  assert {
    condition     = length(google_logging_metric.this) + length(google_monitoring_alert_policy.logs) + length(google_monitoring_alert_policy.status_unhealthy) + length(google_monitoring_uptime_check_config.status) + length(google_monitoring_dashboard.this) + length(google_cloud_run_v2_service_iam_member.uptime_invoker) == 0
    error_message = "monitoring.enable = false creates no monitoring resource and no extra invoker."
  }
}

run "uptime_check_needs_public_ingress" {
  command = plan

  variables {
    function = { ingress_settings = "ALLOW_INTERNAL_ONLY" }
  }

  expect_failures = [var.monitoring]
}

run "secret_values_are_write_only" {
  command = plan

  variables {
    secret_values_version = 1
    secret_values = {
      crusoe_credentials = "{\"access_key_id\": \"AKIA-PLAN-TEST\", \"secret_key\": \"never-in-the-plan\"}"
      kubeconfig         = "apiVersion: v1\nkind: Config\n"
    }
  }

  # secret_data is the argument whose value lands in state and plan: it stays null. That the write-only argument is
  # dropped from plan and state is Terraform's own guarantee (>= 1.11); mocked providers do not reproduce it.
  assert {
    condition     = length(google_secret_manager_secret_version.this) == 2 && alltrue([for v in google_secret_manager_secret_version.this : v.secret_data == null && tostring(v.secret_data_wo_version) == "1"])
    error_message = "Values go only to the write-only argument; secret_data stays empty in the plan."
  }
}

run "secret_values_version_without_values_is_refused" {
  command = plan

  variables {
    secret_values_version = 1
  }

  expect_failures = [var.secret_values_version]
}

run "user_managed_replication_with_cmek_and_direct_vpc_egress" {
  command = plan

  variables {
    secrets = { replica_locations = ["europe-west1", "europe-west4"] }
    encryption = {
      kms_key_name = "projects/kms/locations/europe-west1/keyRings/r/cryptoKeys/k"
      secret_kms_key_names = {
        europe-west1 = "projects/kms/locations/europe-west1/keyRings/r/cryptoKeys/k"
        europe-west4 = "projects/kms/locations/europe-west4/keyRings/r/cryptoKeys/k"
      }
    }
    egress = { direct_vpc = { network = "default", subnetwork = "rotator" } }
  }

  assert {
    condition     = alltrue([for s in google_secret_manager_secret.this : length(s.replication[0].auto) == 0 && length(s.replication[0].user_managed[0].replicas) == 2])
    error_message = "replica_locations gives user-managed replicas."
  }
  assert {
    condition     = alltrue([for s in google_secret_manager_secret.this : alltrue([for r in s.replication[0].user_managed[0].replicas : r.customer_managed_encryption[0].kms_key_name == "projects/kms/locations/${r.location}/keyRings/r/cryptoKeys/k"])])
    error_message = "Each replica is encrypted with its location's key."
  }
  assert {
    condition     = google_cloudfunctions2_function.this.kms_key_name == "projects/kms/locations/europe-west1/keyRings/r/cryptoKeys/k" && google_storage_bucket.source[0].encryption[0].default_kms_key_name == google_cloudfunctions2_function.this.kms_key_name && google_artifact_registry_repository.build.kms_key_name == google_cloudfunctions2_function.this.kms_key_name
    error_message = "The regional key encrypts the function, the bucket and the image repository."
  }
  assert {
    condition     = google_cloudfunctions2_function.this.service_config[0].direct_vpc_egress == "VPC_EGRESS_ALL_TRAFFIC" && google_cloudfunctions2_function.this.service_config[0].direct_vpc_network_interface[0].subnetwork == "rotator" && google_cloudfunctions2_function.this.service_config[0].vpc_connector == null
    error_message = "Direct VPC egress sends all traffic through the VPC (a fixed Cloud NAT address)."
  }
}

run "secret_keys_must_match_the_replicas" {
  command = plan

  variables {
    encryption = { secret_kms_key_names = { europe-west1 = "projects/kms/locations/europe-west1/keyRings/r/cryptoKeys/k" } }
  }

  expect_failures = [var.encryption]
}

run "kubeconfig_renewal_is_off_by_default" {
  command = plan

  assert {
    condition     = length(google_secret_manager_secret_iam_member.runtime_kubeconfig_adder) + length(google_secret_manager_secret_iam_member.runtime_kubeconfig_pruner) + length(google_project_iam_custom_role.kubeconfig_pruner) == 0
    error_message = "Without kubeconfig_renewal the runtime account may only read its secrets."
  }
  assert {
    condition     = !contains(keys(google_cloudfunctions2_function.this.service_config[0].environment_variables), "RENEW_KUBECONFIG") && !contains(keys(google_monitoring_alert_policy.logs), "renewal_failed")
    error_message = "No RENEW_KUBECONFIG and no renewal alert unless asked for."
  }
}

run "kubeconfig_renewal_grants_version_writes_on_the_kubeconfig_secret_only" {
  command = plan

  variables {
    kubeconfig_renewal = { enable = true, grace_hours = 48 }
  }

  assert {
    condition     = google_secret_manager_secret_iam_member.runtime_kubeconfig_adder[0].role == "roles/secretmanager.secretVersionAdder" && google_secret_manager_secret_iam_member.runtime_kubeconfig_adder[0].secret_id == "ccr-pull-secret-rotator-kubeconfig" && google_secret_manager_secret_iam_member.runtime_kubeconfig_adder[0].member == google_service_account.runtime.member
    error_message = "Version adder for the runtime account on the kubeconfig secret only."
  }
  assert {
    condition     = toset(google_project_iam_custom_role.kubeconfig_pruner[0].permissions) == toset(["secretmanager.versions.list", "secretmanager.versions.disable"]) && google_project_iam_custom_role.kubeconfig_pruner[0].role_id == "ccr_pull_secret_rotator_kubeconfig_pruner"
    error_message = "The custom role holds list and disable, nothing else (no destroy, no access)."
  }
  assert {
    condition     = google_secret_manager_secret_iam_member.runtime_kubeconfig_pruner[0].secret_id == "ccr-pull-secret-rotator-kubeconfig" && google_secret_manager_secret_iam_member.runtime_kubeconfig_pruner[0].member == google_service_account.runtime.member
    error_message = "The custom role is bound on the kubeconfig secret only, never on the project or the Crusoe credentials."
  }
  assert {
    condition     = google_cloudfunctions2_function.this.service_config[0].environment_variables["RENEW_KUBECONFIG"] == "true" && google_cloudfunctions2_function.this.service_config[0].environment_variables["RENEW_TOKEN_HOURS"] == "2160" && google_cloudfunctions2_function.this.service_config[0].environment_variables["RENEW_GRACE_HOURS"] == "48"
    error_message = "The function is told to renew, for how long, and after which grace to disable old versions."
  }
  assert {
    condition     = contains(keys(google_monitoring_alert_policy.logs), "renewal_failed")
    error_message = "A failed renewal alerts."
  }
}

run "kubeconfig_renewal_needs_the_latest_version" {
  command = plan

  variables {
    kubeconfig_renewal = { enable = true }
    secrets            = { version = "3" }
  }

  expect_failures = [var.kubeconfig_renewal]
}

run "renewed_tokens_must_outlive_the_credential_margin" {
  command = plan

  variables {
    kubeconfig_renewal = { enable = true, token_hours = 168 }
  }

  expect_failures = [var.kubeconfig_renewal]
}
