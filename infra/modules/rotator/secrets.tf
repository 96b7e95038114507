# The module creates the secrets (or takes existing ones) but, by default, never their values: add versions with
# `gcloud secrets versions add` so that no credential lands in Terraform state or plan files.
resource "google_secret_manager_secret" "this" {
  for_each = var.secrets.create ? local.secret_ids : {}

  project   = var.project_id
  secret_id = each.value
  labels    = local.labels
  # On by default: a rename (new secret_id) or a destroy must not delete the versions added by hand.
  deletion_protection = var.secrets.deletion_protection

  replication {
    dynamic "auto" {
      for_each = length(var.secrets.replica_locations) == 0 ? [1] : []
      content {
        dynamic "customer_managed_encryption" {
          for_each = contains(keys(var.encryption.secret_kms_key_names), "global") ? [var.encryption.secret_kms_key_names["global"]] : []
          content {
            kms_key_name = customer_managed_encryption.value
          }
        }
      }
    }
    dynamic "user_managed" {
      for_each = length(var.secrets.replica_locations) == 0 ? [] : [1]
      content {
        dynamic "replicas" {
          for_each = var.secrets.replica_locations
          content {
            location = replicas.value
            dynamic "customer_managed_encryption" {
              for_each = contains(keys(var.encryption.secret_kms_key_names), replicas.value) ? [var.encryption.secret_kms_key_names[replicas.value]] : []
              content {
                kms_key_name = customer_managed_encryption.value
              }
            }
          }
        }
      }
    }
  }

  depends_on = [google_project_service.this]
}

# Secret-level access for the runtime service account, one binding per secret; nothing project-wide.
resource "google_secret_manager_secret_iam_member" "runtime_accessor" {
  for_each = local.secret_ids

  project   = var.project_id
  secret_id = var.secrets.create ? google_secret_manager_secret.this[each.key].secret_id : each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member

  depends_on = [google_project_service.this]
}

# OPT-IN (secret_values_version set): write-only values, sent to the API but never stored in state or plan.
resource "google_secret_manager_secret_version" "this" {
  for_each = var.secret_values_version == null ? {} : local.secret_ids

  secret                 = var.secrets.create ? google_secret_manager_secret.this[each.key].id : "projects/${var.project_id}/secrets/${each.value}"
  secret_data_wo         = each.key == "kubeconfig" ? var.secret_values.kubeconfig : var.secret_values.crusoe_credentials
  secret_data_wo_version = var.secret_values_version
}

# OPT-IN (kubeconfig_renewal.enable): the runtime account may add versions to the kubeconfig secret, and list and
# disable its versions, on that one secret only. secretVersionAdder holds versions.add alone; no predefined role
# holds list and disable without also destroy (secretVersionManager) or access to every secret, so those two come
# from a custom role, still bound on the one secret.
resource "google_secret_manager_secret_iam_member" "runtime_kubeconfig_adder" {
  count = var.kubeconfig_renewal.enable ? 1 : 0

  project   = var.project_id
  secret_id = var.secrets.create ? google_secret_manager_secret.this["kubeconfig"].secret_id : local.secret_ids.kubeconfig
  role      = "roles/secretmanager.secretVersionAdder"
  member    = google_service_account.runtime.member

  depends_on = [google_project_service.this]
}

resource "google_project_iam_custom_role" "kubeconfig_pruner" {
  count = var.kubeconfig_renewal.enable ? 1 : 0

  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_kubeconfig_pruner"
  title       = "${var.name} kubeconfig version pruner"
  description = "Lists and disables (never destroys) versions; bound only on the ${var.name} kubeconfig secret."
  permissions = ["secretmanager.versions.disable", "secretmanager.versions.list"]

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_iam_member" "runtime_kubeconfig_pruner" {
  count = var.kubeconfig_renewal.enable ? 1 : 0

  project   = var.project_id
  secret_id = var.secrets.create ? google_secret_manager_secret.this["kubeconfig"].secret_id : local.secret_ids.kubeconfig
  role      = google_project_iam_custom_role.kubeconfig_pruner[0].name
  member    = google_service_account.runtime.member
}
