# Plan-level check of the example: both modules together, mocked providers, the tfvars a new user starts from.
mock_provider "google" {
  override_during = plan
}

mock_provider "kubernetes" {
  override_during = plan
}

mock_provider "archive" {
  override_during = plan
}

mock_provider "time" {
  override_during = plan
}

variables {
  project_id        = "my-project"
  region            = "europe-west1"
  registry_url      = "registry.us-east1-a.ccr.crusoecloudcompute.com"
  registry_username = "me@example.com"
  namespaces        = ["team-a", "team-b"]
}

run "example_wires_both_modules" {
  command = plan

  assert {
    condition     = output.kubeconfig_secret_id == "projects/my-project/secrets/ccr-pull-secret-rotator-kubeconfig" && output.crusoe_credentials_secret_id == "projects/my-project/secrets/ccr-pull-secret-rotator-crusoe-credentials"
    error_message = "The example creates the two secrets the README adds versions to."
  }
  assert {
    condition     = output.service_account_name == "ccr-pull-secret-rotator" && output.service_account_namespace == "crusoe-system"
    error_message = "The RBAC's ServiceAccount is the one make kubeconfig makes a token for."
  }
  assert {
    condition     = length(output.scheduler_job_names) == 1 && output.scheduler_job_names["default"] == "ccr-pull-secret-rotator" && output.scheduler_job_name == "ccr-pull-secret-rotator"
    error_message = "One schedule without groups."
  }
}

run "example_with_groups_and_egress" {
  command = plan

  variables {
    groups = {
      east = { clusters = ["east-1"] }
      west = { clusters = ["west-1"] }
    }
    egress = { vpc_connector = "projects/my-project/locations/europe-west1/connectors/rotator" }
  }

  assert {
    condition     = toset(keys(output.scheduler_job_names)) == toset(["east", "west"])
    error_message = "The example passes groups through to the module."
  }
}
