variable "project_number" {
  type        = string
  description = "Number of the project holding the IAP-protected Cloud Run service."
  validation {
    condition     = can(regex("^[0-9]{6,20}$", var.project_number))
    error_message = "project_number must be the project's number, not its ID."
  }
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service."
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like us-central1."
  }
}

variable "service_name" {
  type        = string
  description = "The IAP-protected Cloud Run service."
  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$", var.service_name))
    error_message = "service_name must be a Cloud Run service name."
  }
}

variable "programmatic_clients" {
  type        = list(string)
  description = "OAuth client IDs (Desktop app clients created in the console) allowlisted for programmatic access: a person's Google ID token issued to one of them reaches the service as that person (`deployer login`). Empty: no IAP settings are managed."
  default     = []
  validation {
    condition     = alltrue([for c in var.programmatic_clients : can(regex("^[0-9]+-[a-z0-9]+\\.apps\\.googleusercontent\\.com$", c))])
    error_message = "Each programmatic client must be an OAuth client ID such as 1234-abcd.apps.googleusercontent.com."
  }
}
