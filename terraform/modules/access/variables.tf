variable "project_id" {
  type        = string
  description = "The GCP project."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service."
}

variable "service_name" {
  type        = string
  description = "The IAP-protected Cloud Run service."
}

variable "web_app_users" {
  type        = list(string)
  description = "Who may use MLflow: user:EMAIL, group:EMAIL, domain:DOMAIN or serviceAccount:EMAIL. They get IAP access and may sign as the client service account."
  validation {
    condition = alltrue([
      for m in var.web_app_users :
      can(regex("^(user|group|serviceAccount):[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$|^domain:[a-z0-9.-]+\\.[a-z]{2,}$", m))
    ])
    error_message = "Each member must be user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:DOMAIN."
  }
}

variable "client_account_id" {
  type        = string
  description = "Account id of the client service account that researchers and CI sign as."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.client_account_id))
    error_message = "client_account_id must be 6-30 lowercase letters, digits or dashes."
  }
}

variable "pool_id_prefix" {
  type        = string
  description = "Start of the Workload Identity pool's id (a random 4-character suffix is added)."
  default     = "mlflow-github"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,26}$", var.pool_id_prefix)) && !startswith(var.pool_id_prefix, "gcp-")
    error_message = "pool_id_prefix must be 3-27 lowercase letters, digits or dashes, starting with a letter and not with gcp-."
  }
}

variable "github_repository_id" {
  type        = string
  description = "Numeric id of the GitHub repository whose Actions may sign as the client account through Workload Identity Federation (empty: none)."
  default     = ""
  validation {
    condition     = can(regex("^[0-9]{0,20}$", var.github_repository_id))
    error_message = "github_repository_id must be the repository's numeric id (gh api repos/OWNER/REPO --jq .id), or empty."
  }
}

variable "github_repository_owner_id" {
  type        = string
  description = "Numeric id of the repository's owner (user or organisation), checked together with github_repository_id."
  default     = ""
  validation {
    condition     = can(regex("^[0-9]{0,20}$", var.github_repository_owner_id))
    error_message = "github_repository_owner_id must be the owner's numeric id (gh api repos/OWNER/REPO --jq .owner.id), or empty."
  }
  validation {
    condition     = (var.github_repository_id == "") == (var.github_repository_owner_id == "")
    error_message = "github_repository_id and github_repository_owner_id go together: set both or neither."
  }
}

variable "github_repository" {
  type        = string
  description = "OWNER/REPO of github_repository_id, for people reading the provider's description (the binding uses the numeric ids)."
  default     = ""
}
