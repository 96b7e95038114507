# The function is built by Cloud Build with this module's own service account and pushed to this module's own
# repository, so neither the Compute Engine default service account nor the legacy Cloud Build one is used.
resource "google_artifact_registry_repository" "build" {
  #checkov:skip=CKV_GCP_84:CMEK is opt-in (encryption.kms_key_name): the repository holds only images built from this open-source function (no data, no secrets), so Google-managed encryption is the default.
  project       = var.project_id
  kms_key_name  = var.encryption.kms_key_name
  location      = var.region
  repository_id = "${var.name}-build"
  format        = "DOCKER"
  description   = "Images built from the ${var.name} function's source."
  labels        = local.labels

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.build.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member

  depends_on = [google_project_service.this]
}

# Cloud Build needs to write its build logs (project-level; the other project-level grant, in iam.tf, is
# conditioned on one bucket).
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member

  depends_on = [google_project_service.this]
}
