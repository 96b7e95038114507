variable "labels" {
  description = "Extra labels on every object (added to those of rules.json)."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "all_namespaces" {
  description = "Set when the rotator selects namespaces by glob, '*' or label selector (TARGET_NAMESPACES=team-*, TARGET_NAMESPACE_SELECTOR): one ClusterRole with the same rules in every namespace (secret verbs still narrowed to the one secret name) plus list on namespaces, instead of a Role per namespace. Trade-off: the rotator can then write that one secret name in any namespace, including ones created later."
  type        = bool
  default     = false
  nullable    = false
}

variable "self_renewal" {
  description = "OPT-IN, default false: set together with the rotator module's kubeconfig_renewal.enable (the function's RENEW_KUBECONFIG). Adds a Role and RoleBinding <service_account.name>-self-renewal in the ServiceAccount's own namespace granting create on serviceaccounts/token narrowed to its own name: the function can renew its own token (TokenRequest) and no other account's."
  type        = bool
  default     = false
  nullable    = false
}

variable "namespaces" {
  description = "Target namespaces: in each one a Role and a RoleBinding let the rotator write the pull secret. The namespaces must exist. Ignored (may be empty) with all_namespaces."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for ns in var.namespaces : can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", ns))])
    error_message = "namespaces must hold valid Kubernetes namespace names (DNS-1123 labels)."
  }
}

variable "service_accounts" {
  description = "PATCH_SERVICE_ACCOUNTS of the function: service account names whose imagePullSecrets get the pull secret (get and patch narrowed to these names), or [\"*\"] for every service account of each target namespace (get, list and patch on all of them). Empty: no service account permission."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = (length(var.service_accounts) == 1 && var.service_accounts[0] == "*") || alltrue([for sa in var.service_accounts : can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", sa))])
    error_message = "service_accounts must be valid service account names, or [\"*\"] alone."
  }
}

variable "secret_name" {
  description = "Name of the pull secret the rotator writes; every secret verb (get, create, patch) is narrowed to it with resourceNames."
  type        = string
  default     = "crusoe-image-pull-secrets"
  nullable    = false

  validation {
    condition     = length(var.secret_name) <= 253 && can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", var.secret_name))
    error_message = "secret_name must be a valid Kubernetes secret name (DNS-1123 subdomain)."
  }
}

variable "service_account" {
  description = "The rotator's ServiceAccount: its name (also the name of the Roles and RoleBindings) and its namespace, which must exist. The kubeconfig the function uses carries a bound token of this account (see infra/tools/make_kubeconfig.py)."
  type = object({
    name      = optional(string, "ccr-pull-secret-rotator")
    namespace = optional(string, "crusoe-system")
  })
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for v in [var.service_account.name, var.service_account.namespace] : can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", v))])
    error_message = "service_account.name and service_account.namespace must be valid Kubernetes names (DNS-1123 labels)."
  }
}
