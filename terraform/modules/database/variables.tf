variable "project_id" {
  type        = string
  description = "The GCP project."
}

variable "region" {
  type        = string
  description = "Region of the Cloud SQL instance."
}

variable "name_prefix" {
  type        = string
  description = "Prefix for the instance and secret names."
}

variable "engine" {
  type        = string
  description = "\"postgresql\" (PostgreSQL 16) or \"mysql\" (MySQL 8.4)."
  default     = "postgresql"
  validation {
    condition     = contains(["postgresql", "mysql"], var.engine)
    error_message = "engine must be \"postgresql\" or \"mysql\"."
  }
}

variable "tier" {
  type        = string
  description = "Machine tier. Shared-core db-f1-micro / db-g1-small and db-custom-* run on the ENTERPRISE edition; db-perf-optimized-N-* on ENTERPRISE_PLUS."
  default     = "db-f1-micro"
  validation {
    condition     = can(regex("^db-(f1-micro|g1-small|custom-[0-9]+-[0-9]+|perf-optimized-N-[0-9]+)$", var.tier))
    error_message = "tier must be db-f1-micro, db-g1-small, db-custom-CPUS-MEMORY_MB or db-perf-optimized-N-CPUS."
  }
}

variable "password_secret_id" {
  type        = string
  description = "Id of the Secret Manager secret that holds the database password."
  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,255}$", var.password_secret_id))
    error_message = "password_secret_id must be 1-255 letters, digits, dashes or underscores."
  }
}

variable "allocated_ip_range" {
  type        = string
  description = "Name of the private services range the instance takes its IP from; null lets Cloud SQL pick any range of the network's connection."
  default     = null
}

variable "network_id" {
  type        = string
  description = "The VPC network whose private IP range Cloud SQL uses."
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the instance from deletion, in Terraform and in the Cloud SQL API."
  default     = true
}

variable "disk_size_gb" {
  type        = number
  description = "Initial disk size; it grows automatically."
  default     = 10
  validation {
    condition     = var.disk_size_gb >= 10 && var.disk_size_gb <= 1000
    error_message = "disk_size_gb must be between 10 and 1000."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels for the instance and the secret."
  default     = {}
}
