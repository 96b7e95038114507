variable "admin_kube_context" {
  description = "Context of admin_kubeconfig_path to use; null uses its current context."
  type        = string
  default     = null
}

variable "admin_kubeconfig_path" {
  description = "Path of a kubeconfig allowed to create the rotator's ServiceAccount, Roles and RoleBindings."
  type        = string
  default     = "~/.kube/config"
  nullable    = false
}

variable "namespaces" {
  description = "Namespaces that receive the pull secret."
  type        = list(string)
  nullable    = false
}

variable "project_id" {
  description = "Google Cloud project id."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Google Cloud region."
  type        = string
  default     = "europe-west1"
  nullable    = false
}

variable "registry_url" {
  description = "Crusoe registry host, e.g. registry.us-east1-a.ccr.crusoecloudcompute.com."
  type        = string
  nullable    = false
}

variable "registry_username" {
  description = "Docker username: the e-mail address of the Crusoe user owning the API key."
  type        = string
  nullable    = false
}

variable "egress" {
  description = "Optional: a fixed egress IP for an API server with an allowlist. Create a Cloud NAT with a reserved address on a VPC in var.region, then pass { vpc_connector = <Serverless VPC Access connector id> } or { direct_vpc = { network = ..., subnetwork = ... } }, and allow that address on the API server."
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
}

variable "groups" {
  description = "Optional per-group schedules (one Cloud Scheduler job per group, each rotating only its clusters); empty: one job for everything."
  type = map(object({
    clusters = list(string)
    schedule = optional(string)
    paused   = optional(bool)
  }))
  default  = {}
  nullable = false
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/N) the alerts notify."
  type        = list(string)
  default     = []
  nullable    = false
}
