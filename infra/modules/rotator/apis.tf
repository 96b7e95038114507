locals {
  # A fresh project: Service Usage (to enable the rest) and Cloud Resource Manager (project IAM, the project
  # number) first among them. Every service account, grant and resource below depends on these.
  apis = var.apis.enable ? toset(concat([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
  ], var.monitoring.enable ? ["monitoring.googleapis.com"] : [])) : toset([])
}

resource "google_project_service" "this" {
  for_each = local.apis

  project = var.project_id
  service = each.value
  # Other workloads in the project may use these APIs: never switch them off on destroy.
  disable_on_destroy         = false
  disable_dependent_services = false
}
