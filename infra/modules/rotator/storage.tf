resource "google_storage_bucket" "source" {
  count = var.source_bucket == null ? 1 : 0

  name                        = "${var.project_id}-${var.name}-source"
  project                     = var.project_id
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Old source archives are only needed to roll back: keep the last few.
  lifecycle_rule {
    condition {
      num_newer_versions = 5
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_storage_bucket_object" "source" {
  name         = local.source_object
  bucket       = local.source_bucket
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = local.source_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}
