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
