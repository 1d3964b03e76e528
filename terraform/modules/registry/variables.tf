variable "project_id" {
  type        = string
  description = "The GCP project."
}

variable "region" {
  type        = string
  description = "Region of the Docker repository (the same as Cloud Run's, so pulls stay local)."
}

variable "repository_id" {
  type        = string
  description = "Name of the Artifact Registry repository."
  default     = "mlflow"
  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.repository_id))
    error_message = "repository_id must be lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "keep_versions" {
  type        = number
  description = "How many most recent images to keep; older ones are cleaned up."
  default     = 10
  validation {
    condition     = var.keep_versions >= 1 && var.keep_versions <= 100
    error_message = "keep_versions must be between 1 and 100."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels for the repository."
  default     = {}
}
