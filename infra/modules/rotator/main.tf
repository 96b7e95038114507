locals {
  # The limits the function checks its settings against; the variables' validations use the same file.
  limits = jsondecode(file("${path.module}/../../../function/rotator/limits.json"))

  function_dir      = coalesce(var.source_paths.function_dir, "${path.module}/../../../function")
  requirements_file = coalesce(var.source_paths.requirements_file, "${path.module}/../../../requirements.txt")

  # Every file of the function directory except caches; zipped at the archive's root beside requirements.txt.
  function_files = sort([
    for f in fileset(local.function_dir, "**") : f
    if !strcontains(f, "__pycache__") && !endswith(f, ".pyc") && !startswith(f, ".")
  ])
  # The object name carries a hash of the inputs (not of the zip, whose metadata may vary), so any code or
  # requirements change gives a new object and Terraform redeploys the function.
  source_hash = sha256(join("", concat(
    [for f in local.function_files : "${f}:${filesha256("${local.function_dir}/${f}")}\n"],
    ["requirements.txt:${filesha256(local.requirements_file)}\n"],
  )))
  source_object = "${var.name}/function-source-${substr(local.source_hash, 0, 16)}.zip"
  source_bucket = var.source_bucket == null ? google_storage_bucket.source[0].name : var.source_bucket

  labels = merge(var.labels, { "app" = "ccr-pull-secret-rotator" })

  # The function stops its own work (RUN_DEADLINE_SECONDS) a margin before the platform's timeout, and Cloud
  # Scheduler waits a margin longer than that timeout, so an attempt is never cut off, nor retried, while it runs.
  deadline_margin_seconds = 30
  run_deadline_seconds    = var.function.timeout_seconds - local.deadline_margin_seconds
  attempt_deadline        = "${var.function.timeout_seconds + local.deadline_margin_seconds}s"

  # Fits Cloud Storage's 63 characters for every accepted project id (<= 30) and name (<= 26): a long one is cut
  # and made unique again with a hash of the full name.
  bucket_name_full = "${var.project_id}-${var.name}-source"
  bucket_name      = length(local.bucket_name_full) <= 63 ? local.bucket_name_full : "${substr(local.bucket_name_full, 0, 54)}-${substr(sha256(local.bucket_name_full), 0, 8)}"

  secret_ids = {
    crusoe_credentials = coalesce(var.secrets.crusoe_credentials_id, "${var.name}-crusoe-credentials")
    kubeconfig         = coalesce(var.secrets.kubeconfig_id, "${var.name}-kubeconfig")
  }
  # Full Secret Manager version names, as the function's configuration expects them.
  secret_versions = {
    for k, id in local.secret_ids : k => "projects/${var.project_id}/secrets/${id}/versions/${var.secrets.version}"
  }

  environment = merge(
    {
      CRUSOE_API_ENDPOINT       = var.config.crusoe_api_endpoint
      CRUSOE_CREDENTIALS_SECRET = local.secret_versions.crusoe_credentials
      CREDENTIAL_WARNING_HOURS  = tostring(var.config.credential_warning_hours)
      GOOGLE_CLOUD_PROJECT      = var.project_id # lets log lines carry the request's trace
      KEEP_PREVIOUS_TOKENS      = tostring(var.config.keep_previous_tokens)
      KUBECONFIG_SECRET         = local.secret_versions.kubeconfig
      LOG_EXECUTION_ID          = "true"
      LOG_LEVEL                 = var.config.log_level
      REGISTRY_URL              = var.config.registry_url
      RUN_DEADLINE_SECONDS      = tostring(local.run_deadline_seconds)
      REGISTRY_USERNAME         = var.config.registry_username
      TARGET_NAMESPACES         = join(",", var.config.target_namespaces)
      TARGET_SECRET_NAME        = var.config.target_secret_name
      TOKEN_ALIAS_PREFIX        = var.config.token_alias_prefix
      TOKEN_EXPIRATION_HOURS    = tostring(var.config.token_expiration_hours)
    },
    var.config.kube_context == null ? {} : { KUBE_CONTEXT = var.config.kube_context },
    !var.kubeconfig_renewal.enable ? {} : {
      RENEW_KUBECONFIG  = "true"
      RENEW_TOKEN_HOURS = tostring(var.kubeconfig_renewal.token_hours)
      RENEW_GRACE_HOURS = tostring(var.kubeconfig_renewal.grace_hours)
    },
  )
}

data "archive_file" "source" {
  type             = "zip"
  output_path      = "${path.root}/.terraform/tmp/${var.name}-${substr(local.source_hash, 0, 16)}.zip"
  output_file_mode = "0644"

  dynamic "source" {
    for_each = local.function_files
    content {
      content  = file("${local.function_dir}/${source.value}")
      filename = source.value
    }
  }
  source {
    content  = file(local.requirements_file)
    filename = "requirements.txt"
  }
}

resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:ALLOW_ALL is the default so that an operator can invoke the function manually with an identity token; every request still needs roles/run.invoker, granted only to the invoker service account (nothing public). Set function.ingress_settings = "ALLOW_INTERNAL_ONLY" to restrict the network path too (Cloud Scheduler in the same project still gets through).
  name        = var.name
  project     = var.project_id
  location    = var.region
  description = "Rotates the Crusoe Container Registry pull secret in the target namespaces of a remote cluster."
  labels      = local.labels
  # OPT-IN CMEK for the function's image and source (encryption.kms_key_name); null is Google-managed.
  kms_key_name = var.encryption.kms_key_name

  build_config {
    runtime           = "python312"
    entry_point       = "rotate"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.build.id

    source {
      storage_source {
        bucket = local.source_bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    # One instance serving one request: two rotations never overlap.
    max_instance_count               = 1
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    available_cpu                    = var.function.available_cpu
    available_memory                 = var.function.available_memory
    timeout_seconds                  = var.function.timeout_seconds
    ingress_settings                 = var.function.ingress_settings
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.runtime.email
    environment_variables            = local.environment

    # OPT-IN egress through a VPC (a fixed Cloud NAT address for API servers with an allowlist).
    vpc_connector                 = var.egress.vpc_connector
    vpc_connector_egress_settings = var.egress.vpc_connector == null ? null : (var.egress.all_traffic ? "ALL_TRAFFIC" : "PRIVATE_RANGES_ONLY")
    direct_vpc_egress             = var.egress.direct_vpc == null ? null : (var.egress.all_traffic ? "VPC_EGRESS_ALL_TRAFFIC" : "VPC_EGRESS_PRIVATE_RANGES_ONLY")

    dynamic "direct_vpc_network_interface" {
      for_each = var.egress.direct_vpc == null ? [] : [var.egress.direct_vpc]
      content {
        network    = direct_vpc_network_interface.value.network
        subnetwork = direct_vpc_network_interface.value.subnetwork
        tags       = direct_vpc_network_interface.value.tags
      }
    }
  }

  # The wait runs after every grant the build and the runtime need (iam.tf), so a first apply does not build
  # with permissions that have not propagated yet.
  depends_on = [time_sleep.iam_propagation]
}
