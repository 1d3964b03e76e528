variable "project_id" {
  type        = string
  description = "The GCP project."
}

variable "project_number" {
  type        = string
  description = "The project's number (for the IAP audience, the IAP service agent and the deterministic URL)."
  validation {
    condition     = can(regex("^[0-9]+$", var.project_number))
    error_message = "project_number must be digits."
  }
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service and job."
}

variable "service_name" {
  type        = string
  description = "Name of the Cloud Run service; the migration job is SERVICE_NAME-migrate."
  validation {
    # Job names are at most 63 characters, and the job's name plus its 8-character execution
    # token must stay under 63.
    condition     = can(regex("^[a-z]([a-z0-9-]{0,39}[a-z0-9])?$", var.service_name))
    error_message = "service_name must be 1-41 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "runtime_account_id" {
  type        = string
  description = "Account id of the server's own service account."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.runtime_account_id))
    error_message = "runtime_account_id must be 6-30 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "web_app_admins" {
  type        = list(string)
  description = "MLflow administrators as IAM members (user:EMAIL or serviceAccount:EMAIL); the server gets their bare emails as ADMIN_EMAILS."
  default     = []
  validation {
    condition     = alltrue([for m in var.web_app_admins : can(regex("^(user|serviceAccount):[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", m))])
    error_message = "Each admin must be user:EMAIL or serviceAccount:EMAIL."
  }
}

variable "iap_programmatic_clients" {
  type        = list(string)
  description = "OAuth client IDs (Desktop app clients created once in the console) that IAP allowlists for programmatic access: a person's Google ID token issued to one of them reaches the service as that person (`deployer login`). Empty: IAP's settings are left alone."
  default     = []
  validation {
    condition     = alltrue([for c in var.iap_programmatic_clients : can(regex("^[0-9]+-[a-z0-9]+\\.apps\\.googleusercontent\\.com$", c))])
    error_message = "Each programmatic client must be an OAuth client ID such as 1234-abcd.apps.googleusercontent.com."
  }
}

variable "image" {
  type        = string
  description = "The server image, REGION-docker.pkg.dev/PROJECT/REPO/mlflow-server:TAG (or @sha256:…)."
  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^\\s:@]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must be a full image reference with a tag or digest."
  }
}

variable "database" {
  type = object({
    engine                  = string
    connection_name         = string
    database_name           = string
    user_name               = string
    password_secret_id      = string
    password_secret_version = string
    max_connections         = number
  })
  description = "The Cloud SQL database the server uses (outputs of the database module)."
}

variable "bucket_name" {
  type        = string
  description = "The artifact bucket."
}

variable "vpc_egress" {
  type        = string
  description = "\"connector\" or \"direct\" (see the network module)."
  validation {
    condition     = contains(["connector", "direct"], var.vpc_egress)
    error_message = "vpc_egress must be \"connector\" or \"direct\"."
  }
}

variable "connector_id" {
  type        = string
  description = "The serverless VPC connector, with vpc_egress = \"connector\"."
  default     = null
}

variable "network_name" {
  type        = string
  description = "The VPC network, with vpc_egress = \"direct\"."
  default     = null
}

variable "subnetwork" {
  type        = string
  description = "The subnetwork, with vpc_egress = \"direct\"."
  default     = null
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm; 0 scales to zero when idle (no cost, a few seconds of cold start)."
  default     = 0
}

variable "max_instances" {
  type        = number
  description = "Upper bound on instances; with workers it must fit the database's connection cap."
  default     = 1
}

variable "workers" {
  type        = number
  description = "Server worker processes per instance."
  default     = 2
}

variable "threads" {
  type        = number
  description = "Threads per worker process."
  default     = 4
}

variable "reserved_connections" {
  type        = number
  description = "Database connections kept free for the migration job and administrators."
  default     = 5
}

variable "cpu" {
  type        = string
  description = "vCPUs per instance."
  default     = "1"
}

variable "memory" {
  type        = string
  description = "Memory per instance."
  default     = "1Gi"
}

variable "custom_domain" {
  type        = string
  description = "An extra host name the server answers to (empty for none)."
  default     = ""
}

variable "labels" {
  type        = map(string)
  description = "Labels for the service, job and revisions."
  default     = {}
}

variable "db_sleep_after_minutes" {
  type        = number
  description = "Minutes without a request after which the database is stopped; 0 = never. The server wakes it on the next request."
  default     = 0
  validation {
    condition     = var.db_sleep_after_minutes == 0 || (var.db_sleep_after_minutes >= 15 && var.db_sleep_after_minutes <= 10080)
    error_message = "db_sleep_after_minutes must be 0 (never) or between 15 and 10080 (a week)."
  }
}

variable "last_request_object" {
  type        = string
  description = "Object (in bucket_name) the server touches, at most once a minute, with the time of its last request."
  default     = "_deployer/last-request"
}
