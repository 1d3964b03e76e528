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
  default     = "mlflow-log-pusher"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.client_account_id))
    error_message = "client_account_id must be 6-30 lowercase letters, digits or dashes."
  }
}

variable "github_repository" {
  type        = string
  description = "OWNER/REPO whose GitHub Actions may sign as the client account through Workload Identity Federation (empty: none)."
  default     = ""
  validation {
    condition     = var.github_repository == "" || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be OWNER/REPO, or empty."
  }
}
