# Three identities, one job each:
# - runtime: what the function runs as; may only read the two secrets (secret-level bindings in secrets.tf);
# - invoker: what Cloud Scheduler signs its OIDC token as; may only invoke this one Cloud Run service;
# - build:   what Cloud Build builds the function's image as (build.tf).
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name}-run"
  display_name = "${var.name} function runtime"
  description  = "Runs the ${var.name} Cloud Function; reads only its two Secret Manager secrets."
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name}-inv"
  display_name = "${var.name} scheduler invoker"
  description  = "Identity of the Cloud Scheduler job's OIDC token; may invoke only the ${var.name} function."
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name}-bld"
  display_name = "${var.name} function build"
  description  = "Builds the ${var.name} function's image with Cloud Build."
}

# A 2nd gen function is served by a Cloud Run service: run.invoker on that one service, never allUsers.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}
