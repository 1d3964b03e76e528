variable "project_id" {
  type        = string
  description = "The GCP project."
}

variable "region" {
  type        = string
  description = "Region of the sleeper job and its schedule (the stack's region)."
}

variable "name_prefix" {
  type        = string
  description = "The deployment's name; the job, its schedule and its service account are named after it."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.name_prefix))
    error_message = "name_prefix must be lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "sleeper_account_id" {
  type        = string
  description = "Account id (6-30 characters) of the sleeper job's service account."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.sleeper_account_id))
    error_message = "sleeper_account_id must be 6-30 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "instance_name" {
  type        = string
  description = "The Cloud SQL instance the job stops and the server starts."
}

variable "connection_name" {
  type        = string
  description = "The instance's PROJECT:REGION:INSTANCE name (the job and the server read the instance from it)."
}

variable "sleep_after_minutes" {
  type        = number
  description = "Stop the instance when no request has reached the server for this many minutes."
  validation {
    condition     = var.sleep_after_minutes >= 15 && var.sleep_after_minutes <= 10080
    error_message = "sleep_after_minutes must be between 15 and 10080 (a week)."
  }
}

variable "image" {
  type        = string
  description = "The server image; the job runs its `python -m deployer.server.sleeper`."
}

variable "bucket_name" {
  type        = string
  description = "The bucket holding the last-request object the server touches."
}

variable "last_request_object" {
  type        = string
  description = "Name of the object (inside bucket_name) whose content is the time of the last request."
  validation {
    condition     = can(regex("^_deployer/[a-z0-9._-]+$", var.last_request_object))
    error_message = "last_request_object must be an object under _deployer/."
  }
}

variable "runtime_service_account" {
  type        = string
  description = "Email of the server's service account, which may start the instance."
}

variable "labels" {
  type        = map(string)
  description = "Labels for the job."
  default     = {}
}
