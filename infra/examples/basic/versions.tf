terraform {
  required_version = ">= 1.11.0"

  # Exact versions: an example is a deployment, and a deployment pins what it was tested with.
  required_providers {
    archive = {
      source  = "hashicorp/archive"
      version = "2.8.1"
    }
    google = {
      source  = "hashicorp/google"
      version = "8.7.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "3.4.0"
    }
    time = {
      source  = "hashicorp/time"
      version = "0.14.2"
    }
  }
}
