resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:The bucket holds only zips of this open-source function that Terraform uploads and Cloud Functions reads; access logs would need a second bucket to run and say nothing Cloud Audit Logs do not.
  count = var.source_bucket == null ? 1 : 0

  name                        = local.bucket_name
  project                     = var.project_id
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # It holds only archives Terraform makes again from the repository: never let them block `terraform destroy`.
  force_destroy = true

  versioning {
    enabled = true
  }

  # Every archive has its own name (it carries the code's hash), so a version is never followed by a newer one
  # of the same name and num_newer_versions would never fire. Terraform deletes the previous archive when it
  # uploads a new one; with versioning that archive turns noncurrent, and this rule removes it 30 days later
  # (long enough to roll back by hand).
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.encryption.kms_key_name == null ? [] : [var.encryption.kms_key_name]
    content {
      default_kms_key_name = encryption.value
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

  depends_on = [google_project_service.this]
}
