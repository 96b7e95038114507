variable "apis" {
  description = "Enable the Google APIs the rotator needs (Cloud Functions, Cloud Run, Cloud Build, Artifact Registry, Cloud Scheduler, Secret Manager, IAM, Storage). Set to false when the project's APIs are managed elsewhere."
  type = object({
    enable = optional(bool, true)
  })
  default  = {}
  nullable = false
}

variable "config" {
  description = "The function's configuration, passed as environment variables (see the function's README): registry URL and username, target namespaces and secret name, token lifetime, alias prefix, number of previous tokens kept, Crusoe API endpoint, kube context, log level, and credential_warning_hours (CREDENTIAL_WARNING_HOURS, default 168 = 7 days): how long before the kubeconfig's own ServiceAccount token or client certificate expires the status answer turns 503 and the credential alert fires."
  type = object({
    crusoe_api_endpoint      = optional(string, "https://api.cloud.crusoe.ai/v1alpha5")
    credential_warning_hours = optional(number, 168)
    keep_previous_tokens     = optional(number, 1)
    kube_context             = optional(string)
    log_level                = optional(string, "INFO")
    registry_url             = string
    registry_username        = string
    target_namespaces        = list(string)
    target_secret_name       = optional(string, "crusoe-image-pull-secrets")
    token_alias_prefix       = optional(string, "ccr-rotator")
    token_expiration_hours   = optional(number, 12)
  })
  nullable = false

  # Bounds and patterns come from the function's own limits file (local.limits), so a value accepted here is
  # never refused by the function at run time.
  validation {
    condition     = length(var.config.target_namespaces) > 0 && alltrue([for ns in var.config.target_namespaces : can(regex(local.limits.namespace.pattern, ns))])
    error_message = "config.target_namespaces must hold at least one namespace, each a valid Kubernetes namespace name (DNS-1123 label)."
  }
  validation {
    condition     = length(var.config.target_secret_name) <= local.limits.secret_name.max_length && can(regex(local.limits.secret_name.pattern, var.config.target_secret_name))
    error_message = "config.target_secret_name must be a valid Kubernetes secret name (DNS-1123 subdomain)."
  }
  validation {
    condition     = var.config.token_expiration_hours >= local.limits.token_expiration_hours.min && var.config.token_expiration_hours <= local.limits.token_expiration_hours.max && floor(var.config.token_expiration_hours) == var.config.token_expiration_hours
    error_message = "config.token_expiration_hours must be a whole number of hours from ${local.limits.token_expiration_hours.min} to ${local.limits.token_expiration_hours.max}; keep it longer than the schedule's interval."
  }
  validation {
    condition     = var.config.credential_warning_hours >= local.limits.credential_warning_hours.min && var.config.credential_warning_hours <= local.limits.credential_warning_hours.max && floor(var.config.credential_warning_hours) == var.config.credential_warning_hours
    error_message = "config.credential_warning_hours must be a whole number of hours from ${local.limits.credential_warning_hours.min} to ${local.limits.credential_warning_hours.max}."
  }
  validation {
    condition     = var.config.keep_previous_tokens >= local.limits.keep_previous_tokens.min && var.config.keep_previous_tokens <= local.limits.keep_previous_tokens.max && floor(var.config.keep_previous_tokens) == var.config.keep_previous_tokens
    error_message = "config.keep_previous_tokens must be a whole number from ${local.limits.keep_previous_tokens.min} to ${local.limits.keep_previous_tokens.max}."
  }
  validation {
    condition     = can(regex(local.limits.token_alias_prefix.pattern, var.config.token_alias_prefix))
    error_message = "config.token_alias_prefix must be 1-40 lower-case letters, digits or dashes, starting and ending with a letter or digit."
  }
  validation {
    condition     = contains(local.limits.log_levels, var.config.log_level)
    error_message = "config.log_level must be one of ${join(", ", local.limits.log_levels)}."
  }
  validation {
    condition     = startswith(var.config.crusoe_api_endpoint, "https://")
    error_message = "config.crusoe_api_endpoint must be an https:// URL including the version prefix, e.g. https://api.cloud.crusoe.ai/v1alpha5."
  }
  validation {
    condition     = length(trimspace(var.config.registry_url)) > 0 && length(trimspace(var.config.registry_username)) > 0
    error_message = "config.registry_url and config.registry_username are required (the username is the e-mail address of the Crusoe user that owns the API key)."
  }
}

variable "function" {
  description = "Cloud Function (2nd gen) settings. The scheduler's attempt deadline is timeout_seconds + 30 s and the function is told to finish its own work by timeout_seconds - 30 s (RUN_DEADLINE_SECONDS), so a slow rotation is never retried while it still runs; ingress_settings defaults to ALLOW_ALL with IAM-only invocation (see the README for ALLOW_INTERNAL_ONLY)."
  type = object({
    available_cpu    = optional(string, "1")
    available_memory = optional(string, "512M")
    ingress_settings = optional(string, "ALLOW_ALL")
    timeout_seconds  = optional(number, 540)
  })
  default  = {}
  nullable = false

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.function.ingress_settings)
    error_message = "function.ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
  validation {
    # Cloud Scheduler's attempt deadline for HTTP targets is 15 s to 30 min and must exceed the function's timeout
    # by the deadline margin (30 s); the function's own limit is 60 min.
    condition     = var.function.timeout_seconds >= 60 && var.function.timeout_seconds <= 1770 && floor(var.function.timeout_seconds) == var.function.timeout_seconds
    error_message = "function.timeout_seconds must be a whole number between 60 and 1770 (Cloud Scheduler's longest attempt deadline, 1800 s, minus the 30 s margin)."
  }
  validation {
    condition     = can(regex("^[0-9]+(M|Mi|G|Gi)$", var.function.available_memory))
    error_message = "function.available_memory must look like 256M, 512M, 1G or 1Gi."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "name" {
  description = "Name of the function, the scheduler job and the prefix of every other resource's name. 6-26 characters so that derived service account ids (<name>-run, -inv, -bld) fit in 30."
  type        = string
  default     = "ccr-pull-secret-rotator"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,24}[a-z0-9]$", var.name))
    error_message = "name must be 6-26 lower-case letters, digits or dashes, starting with a letter and not ending with a dash."
  }
}

variable "project_id" {
  description = "Google Cloud project id that holds every resource."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6-30 lower-case letters, digits or dashes)."
  }
}

variable "region" {
  description = "Region of the function, the scheduler job, the Artifact Registry repository and the source bucket."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1 or us-central1."
  }
}

variable "schedule" {
  description = "Cloud Scheduler job: cron expression (default every 6 hours, like the Helm chart), time zone, paused flag and retries with exponential backoff."
  type = object({
    cron                = optional(string, "0 */6 * * *")
    max_backoff_seconds = optional(number, 600)
    max_doublings       = optional(number, 3)
    min_backoff_seconds = optional(number, 30)
    paused              = optional(bool, false)
    retry_count         = optional(number, 3)
    time_zone           = optional(string, "Etc/UTC")
  })
  default  = {}
  nullable = false

  validation {
    condition     = length(split(" ", trimspace(var.schedule.cron))) == 5
    error_message = "schedule.cron must be a five-field unix-cron expression, e.g. \"0 */6 * * *\"."
  }
  validation {
    condition     = var.schedule.retry_count >= 0 && var.schedule.retry_count <= 5
    error_message = "schedule.retry_count must be between 0 and 5 (Cloud Scheduler's limit)."
  }
  validation {
    condition     = var.schedule.min_backoff_seconds >= 5 && var.schedule.min_backoff_seconds <= var.schedule.max_backoff_seconds && var.schedule.max_backoff_seconds <= 3600
    error_message = "schedule backoff must satisfy 5 <= min_backoff_seconds <= max_backoff_seconds <= 3600."
  }
  validation {
    condition     = var.schedule.max_doublings >= 0 && var.schedule.max_doublings <= 16
    error_message = "schedule.max_doublings must be between 0 and 16."
  }
}

variable "secrets" {
  description = "Secret Manager secrets the function reads at run time: the Crusoe credentials (JSON {\"access_key_id\", \"secret_key\"}) and the kubeconfig. With create = true the module creates both (named <name>-crusoe-credentials and <name>-kubeconfig unless ids are given) without any value: add versions with gcloud (see the README). With create = false, pass the ids of existing secrets in the same project. version is the version the function reads (\"latest\" picks up new versions without redeploying). deletion_protection (default true) makes Terraform refuse to delete a created secret, so a rename or a destroy cannot drop the values added by hand: set it to false and apply before removing them on purpose. replica_locations: empty for automatic replication, or the regions of user-managed replicas (for organisations that restrict locations)."
  type = object({
    create                = optional(bool, true)
    crusoe_credentials_id = optional(string)
    kubeconfig_id         = optional(string)
    version               = optional(string, "latest")
    deletion_protection   = optional(bool, true)
    replica_locations     = optional(list(string), [])
  })
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for l in var.secrets.replica_locations : can(regex("^[a-z]+-[a-z]+[0-9]+$", l))]) && length(distinct(var.secrets.replica_locations)) == length(var.secrets.replica_locations)
    error_message = "secrets.replica_locations must be distinct Google Cloud regions such as europe-west1 (empty: automatic replication)."
  }
  validation {
    condition     = var.secrets.create || (var.secrets.crusoe_credentials_id != null && var.secrets.kubeconfig_id != null)
    error_message = "With secrets.create = false both secrets.crusoe_credentials_id and secrets.kubeconfig_id are required."
  }
  validation {
    condition     = alltrue([for id in [var.secrets.crusoe_credentials_id, var.secrets.kubeconfig_id] : id == null || can(regex("^[a-zA-Z0-9_-]{1,255}$", id))])
    error_message = "Secret ids are short ids (letters, digits, - and _), not full resource names."
  }
  validation {
    condition     = var.secrets.version == "latest" || can(regex("^[1-9][0-9]*$", var.secrets.version))
    error_message = "secrets.version must be \"latest\" or a version number."
  }
}

variable "secret_values" {
  description = "OPT-IN, used only when secret_values_version is set: the secret payloads Terraform writes as write-only arguments (never stored in state or plan; needs Terraform >= 1.11). crusoe_credentials is the JSON {\"access_key_id\": ..., \"secret_key\": ...}; kubeconfig is the kubeconfig's YAML."
  type = object({
    crusoe_credentials = string
    kubeconfig         = string
  })
  default   = null
  ephemeral = true
  sensitive = true
}

variable "secret_values_version" {
  description = "OPT-IN, default null (off): set a number to let Terraform add the versions of both secrets from secret_values; bump it to write new values. The values then pass through your variables and CI (not through state). Leave null and add versions with gcloud (recommended, see the README)."
  type        = number
  default     = null

  validation {
    condition     = var.secret_values_version == null || try(var.secret_values_version >= 1, false)
    error_message = "secret_values_version must be null or a number >= 1."
  }
  validation {
    condition     = var.secret_values_version == null || var.secret_values != null
    error_message = "secret_values_version is set but secret_values is not: pass secret_values = { crusoe_credentials = ..., kubeconfig = ... }, or leave secret_values_version null and add the versions with gcloud."
  }
}

variable "source_bucket" {
  description = "Bucket for the zipped function source. null creates <project_id>-<name>-source (uniform access, public access prevention, versioning); a name uses that existing bucket."
  type        = string
  default     = null

  validation {
    condition     = var.source_bucket == null || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", coalesce(var.source_bucket, "x")))
    error_message = "source_bucket must be a bucket name."
  }
}

variable "source_paths" {
  description = "Where the function's code is: the directory zipped to the archive's root (main.py and its package) and the requirements file put beside it. Defaults to this repository's function/ and requirements.txt."
  type = object({
    function_dir      = optional(string)
    requirements_file = optional(string)
  })
  default  = {}
  nullable = false
}

variable "egress" {
  description = "OPT-IN: send the function's outbound traffic through a VPC, so that an API server that allows only known addresses sees a fixed IP (a Cloud NAT address on that VPC's region). Either vpc_connector (a Serverless VPC Access connector id) or direct_vpc (Direct VPC egress: network, subnetwork, network tags). all_traffic (default true) routes every request through the VPC, which is what makes the NAT address the source of the calls to the API server; false routes only private ranges."
  type = object({
    vpc_connector = optional(string)
    direct_vpc = optional(object({
      network    = string
      subnetwork = optional(string)
      tags       = optional(list(string), [])
    }))
    all_traffic = optional(bool, true)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.egress.vpc_connector == null || var.egress.direct_vpc == null
    error_message = "egress: set vpc_connector or direct_vpc, not both."
  }
}

variable "encryption" {
  description = "OPT-IN customer-managed encryption keys (CMEK). kms_key_name: a Cloud KMS key in var.region for the source bucket, the Artifact Registry repository and the function. secret_kms_key_names: for the two secrets, one key per replica location: {\"global\" = key} with automatic replication, else one per entry of secrets.replica_locations. The keys' IAM must let the services' agents encrypt and decrypt (see the README)."
  type = object({
    kms_key_name         = optional(string)
    secret_kms_key_names = optional(map(string), {})
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.encryption.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", coalesce(var.encryption.kms_key_name, "x")))
    error_message = "encryption.kms_key_name must be a key's full name: projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
  validation {
    condition     = length(var.encryption.secret_kms_key_names) == 0 || toset(keys(var.encryption.secret_kms_key_names)) == (length(var.secrets.replica_locations) == 0 ? toset(["global"]) : toset(var.secrets.replica_locations))
    error_message = "encryption.secret_kms_key_names needs exactly one key per replica: {\"global\" = ...} with automatic replication, or one per secrets.replica_locations entry."
  }
}

variable "groups" {
  description = "OPT-IN per-group schedules for a fleet that outgrows one invocation: one Cloud Scheduler job per group against the same function, named <name>-<group>, each POSTing {\"clusters\": [...]} (the function rotates only those clusters, with a per-group token alias prefix, so groups never revoke each other's tokens). schedule defaults to schedule.cron, paused to schedule.paused. Empty (default): one job, <name>, with an empty body, which rotates every cluster. A cluster belongs to at most one group."
  type = map(object({
    clusters = list(string)
    schedule = optional(string)
    paused   = optional(bool)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for g in keys(var.groups) : can(regex("^[a-z]([a-z0-9-]{0,29}[a-z0-9])?$", g))])
    error_message = "groups keys must be 1-31 lower-case letters, digits or dashes, starting with a letter: they name the scheduler jobs (<name>-<group>)."
  }
  validation {
    condition     = alltrue([for g in values(var.groups) : length(g.clusters) > 0 && alltrue([for c in g.clusters : length(trimspace(c)) > 0])])
    error_message = "Every group needs at least one cluster name, and no name may be empty."
  }
  validation {
    condition     = length(flatten([for g in values(var.groups) : g.clusters])) == length(distinct(flatten([for g in values(var.groups) : g.clusters])))
    error_message = "A cluster may belong to one group only: two groups rotating the same cluster would fight over its pull secret."
  }
  validation {
    condition     = alltrue([for g in values(var.groups) : g.schedule == null || length(split(" ", trimspace(coalesce(g.schedule, "x")))) == 5])
    error_message = "A group's schedule must be a five-field unix-cron expression, e.g. \"30 */6 * * *\"."
  }
}

variable "monitoring" {
  description = "Log-based metrics, alert policies, an uptime check and a dashboard (see docs/operations.md). notification_channels: ids of existing channels (projects/P/notificationChannels/N) the alerts notify; empty creates the alerts without notifications. no_success_hours: alert when no successful (non-dry) rotation was logged for that long (keep it above the schedule's interval; at most 23). expiry_warning_hours: alert when a target's token expires within that many hours (default: a quarter of config.token_expiration_hours, the function's own default margin). uptime_check: check the function's GET status answer (200 healthy, 503 at risk) every uptime_period_seconds with Cloud Monitoring's service-agent OIDC token; needs ingress ALLOW_ALL. Set enable = false to create none of it."
  type = object({
    enable                = optional(bool, true)
    notification_channels = optional(list(string), [])
    no_success_hours      = optional(number, 13)
    expiry_warning_hours  = optional(number)
    uptime_check          = optional(bool, true)
    uptime_period_seconds = optional(number, 900)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.monitoring.no_success_hours >= 1 && var.monitoring.no_success_hours <= 23 && floor(var.monitoring.no_success_hours) == var.monitoring.no_success_hours
    error_message = "monitoring.no_success_hours must be a whole number of hours from 1 to 23 (Cloud Monitoring's longest absence window is 23.5 h)."
  }
  validation {
    condition     = var.monitoring.expiry_warning_hours == null || try(var.monitoring.expiry_warning_hours > 0, false)
    error_message = "monitoring.expiry_warning_hours must be a positive number of hours (or null for a quarter of config.token_expiration_hours)."
  }
  validation {
    condition     = contains([60, 300, 600, 900], var.monitoring.uptime_period_seconds)
    error_message = "monitoring.uptime_period_seconds must be 60, 300, 600 or 900 (Cloud Monitoring's uptime check periods)."
  }
  validation {
    condition     = alltrue([for c in var.monitoring.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "monitoring.notification_channels must hold full channel names: projects/P/notificationChannels/N."
  }
  validation {
    condition     = !(var.monitoring.enable && var.monitoring.uptime_check) || var.function.ingress_settings == "ALLOW_ALL"
    error_message = "The uptime check reaches the function from the internet: it needs function.ingress_settings = \"ALLOW_ALL\" (still IAM-only). Set monitoring.uptime_check = false with internal-only ingress."
  }
}

variable "build" {
  description = "Cloud Build identity settings. iam_wait_seconds: how long to wait after granting the build and runtime accounts their roles before the function is created, because new IAM grants take a while to propagate (the provider's own example waits 60 s)."
  type = object({
    iam_wait_seconds = optional(number, 60)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.build.iam_wait_seconds >= 0 && var.build.iam_wait_seconds <= 600
    error_message = "build.iam_wait_seconds must be between 0 and 600."
  }
}

variable "kubeconfig_renewal" {
  description = "OPT-IN, default off: the function renews its own kubeconfig (RENEW_KUBECONFIG). When the ServiceAccount token in the kubeconfig secret expires within config.credential_warning_hours, a rotation run requests a fresh token of token_hours for that same ServiceAccount (TokenRequest; give the account the right with the cluster-rbac module's self_renewal = true) and adds the kubeconfig with it as a new version of the kubeconfig secret; older ENABLED versions are disabled (never destroyed) once the version in use has rotated cleanly and is grace_hours old. Grants the runtime account, on the kubeconfig secret only: roles/secretmanager.secretVersionAdder and a custom role with secretmanager.versions.list and secretmanager.versions.disable. Needs secrets.version = \"latest\"."
  type = object({
    enable      = optional(bool, false)
    token_hours = optional(number, 2160)
    grace_hours = optional(number, 24)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.kubeconfig_renewal.token_hours >= local.limits.renew_token_hours.min && var.kubeconfig_renewal.token_hours <= local.limits.renew_token_hours.max && floor(var.kubeconfig_renewal.token_hours) == var.kubeconfig_renewal.token_hours && var.kubeconfig_renewal.token_hours > var.config.credential_warning_hours
    error_message = "kubeconfig_renewal.token_hours must be a whole number of hours from ${local.limits.renew_token_hours.min} to ${local.limits.renew_token_hours.max}, and more than config.credential_warning_hours (or a renewed token would be at risk at once)."
  }
  validation {
    condition     = var.kubeconfig_renewal.grace_hours >= local.limits.renew_grace_hours.min && var.kubeconfig_renewal.grace_hours <= local.limits.renew_grace_hours.max && floor(var.kubeconfig_renewal.grace_hours) == var.kubeconfig_renewal.grace_hours
    error_message = "kubeconfig_renewal.grace_hours must be a whole number of hours from ${local.limits.renew_grace_hours.min} to ${local.limits.renew_grace_hours.max}."
  }
  validation {
    condition     = !var.kubeconfig_renewal.enable || var.secrets.version == "latest"
    error_message = "kubeconfig_renewal needs secrets.version = \"latest\": the function must read the version it adds."
  }
}
