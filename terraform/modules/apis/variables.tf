variable "project_id" {
  type        = string
  description = "The GCP project to enable the APIs in."
}

variable "extra_services" {
  type        = list(string)
  description = "APIs to enable in addition to the ones the stack always needs."
  default     = []
  validation {
    condition     = alltrue([for s in var.extra_services : can(regex("^[a-z0-9.-]+\\.googleapis\\.com$", s))])
    error_message = "Each extra service must be an API name such as monitoring.googleapis.com."
  }
}
