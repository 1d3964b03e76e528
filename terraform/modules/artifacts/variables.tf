variable "project_id" {
  type        = string
  description = "The GCP project."
}

variable "location" {
  type        = string
  description = "Bucket location; the stack's region keeps traffic to Cloud Run free."
}

variable "bucket_name" {
  type        = string
  description = "Globally unique bucket name."
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$", var.bucket_name)) && !can(regex("goog", var.bucket_name))
    error_message = "bucket_name must be 3-63 lowercase letters, digits, dots, dashes or underscores, and may not contain \"goog\"."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete a bucket that still holds artifacts. Off: artifacts are kept."
  default     = false
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days an overwritten or deleted artifact version is kept before it is removed."
  default     = 30
  validation {
    condition     = var.noncurrent_version_days >= 1 && var.noncurrent_version_days <= 3650
    error_message = "noncurrent_version_days must be between 1 and 3650."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels for the bucket."
  default     = {}
}
