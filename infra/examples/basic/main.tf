provider "google" {
  project = var.project_id
  region  = var.region
}

# Admin access to the target cluster, used only by Terraform to apply the RBAC; the function itself gets a
# kubeconfig of the least-privilege ServiceAccount (infra/tools/make_kubeconfig.py).
provider "kubernetes" {
  config_path    = var.admin_kubeconfig_path
  config_context = var.admin_kube_context
}

module "cluster_rbac" {
  source = "../../modules/cluster-rbac"

  namespaces  = var.namespaces
  secret_name = "crusoe-image-pull-secrets"
}

module "rotator" {
  source = "../../modules/rotator"

  project_id = var.project_id
  region     = var.region
  labels     = { env = "example" }

  config = {
    registry_url       = var.registry_url
    registry_username  = var.registry_username
    target_namespaces  = var.namespaces
    target_secret_name = "crusoe-image-pull-secrets"
  }

  # A fixed egress address (Cloud NAT) when the API server allows only known addresses; see var.egress.
  egress = var.egress
  groups = var.groups

  monitoring = {
    notification_channels = var.notification_channels
  }
}
