variable "labels" {
  description = "Extra labels on every object (added to those of rules.json)."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "namespaces" {
  description = "Target namespaces: in each one a Role and a RoleBinding let the rotator write the pull secret. The namespaces must exist."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.namespaces) > 0 && alltrue([for ns in var.namespaces : can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", ns))])
    error_message = "namespaces must hold at least one valid Kubernetes namespace name (DNS-1123 label)."
  }
}

variable "secret_name" {
  description = "Name of the pull secret the rotator writes; every verb (get, create, patch) is narrowed to it with resourceNames."
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
