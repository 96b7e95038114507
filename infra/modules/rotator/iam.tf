# Three identities, one job each:
# - runtime: what the function runs as; may only read the two secrets (secret-level bindings in secrets.tf), and with
#   kubeconfig_renewal add, list and disable versions of the kubeconfig secret;
# - invoker: what Cloud Scheduler signs its OIDC token as; may only invoke this one Cloud Run service;
# - build:   what Cloud Build builds the function's image as (build.tf).
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name}-run"
  display_name = "${var.name} function runtime"
  description  = "Runs the ${var.name} Cloud Function; reads only its two Secret Manager secrets."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name}-inv"
  display_name = "${var.name} scheduler invoker"
  description  = "Identity of the Cloud Scheduler job's OIDC token; may invoke only the ${var.name} function."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name}-bld"
  display_name = "${var.name} function build"
  description  = "Builds the ${var.name} function's image with Cloud Build."

  depends_on = [google_project_service.this]
}

# A 2nd gen function is served by a Cloud Run service: run.invoker on that one service, never allUsers.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# Read at plan time (no depends_on): the call is billed to the caller's quota project, so it needs no API of this
# project, and the plan then shows the real bucket and service agent names.
data "google_project" "this" {
  project_id = var.project_id
}

# Cloud Functions copies the uploaded source into Google's own gcf-v2-sources-<project number>-<region> bucket and
# the build reads it from there, not from the module's bucket (hashicorp/terraform-provider-google#20571). That
# bucket may not exist before the first deploy, so the grant is project-level with a condition naming exactly that
# bucket and its objects: read access to nothing else.
resource "google_project_iam_member" "build_gcf_sources_reader" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources bucket only"
    description = "The bucket Cloud Functions copies the function's source into for the build."
    expression  = "resource.name == \"projects/_/buckets/${local.gcf_sources_bucket}\" || resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}/objects/\")"
  }

  depends_on = [google_project_service.this]
}

locals {
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

# New grants take a while to reach every Google service; the provider's own example waits 60 s before creating
# the function, or the first build can fail with "permission denied" on a grant made seconds before.
resource "time_sleep" "iam_propagation" {
  create_duration = "${var.build.iam_wait_seconds}s"

  triggers = {
    build_account   = google_service_account.build.email
    runtime_account = google_service_account.runtime.email
  }

  depends_on = [
    google_project_service.this,
    google_artifact_registry_repository_iam_member.build_writer,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_gcf_sources_reader,
    google_storage_bucket_iam_member.build_source_reader,
    google_secret_manager_secret_iam_member.runtime_accessor,
    google_secret_manager_secret_iam_member.runtime_kubeconfig_adder,
    google_secret_manager_secret_iam_member.runtime_kubeconfig_pruner,
  ]
}
