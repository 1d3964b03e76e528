variable "project_id" {
  type        = string
  description = "ID of the GCP project to deploy into (not its name or number)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be 6-30 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "Region for every regional resource (Cloud Run, Cloud SQL, the bucket, the registry), e.g. europe-west1."
  validation {
    # Regions that offer both Cloud Run and Cloud SQL, kept once in deployer/limits.json.
    condition     = contains(jsondecode(file("${path.module}/../deployer/limits.json")).regions, var.region)
    error_message = "region must offer Cloud Run and Cloud SQL (the list, with its source and date, is in deployer/limits.json), e.g. us-central1 or europe-west1."
  }
}

variable "environment" {
  type        = string
  description = "The deployer's environment (its vars file's name). Outside \"default\" it is added to every name (SERVICE_NAME-ENVIRONMENT), so environments can share a project."
  default     = "default"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.environment))
    error_message = "environment must be 1-20 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "service_name" {
  type        = string
  description = "Name of the Cloud Run service (SERVICE_NAME-ENVIRONMENT outside the default environment); also the prefix of the other resources' names."
  default     = "mlflow"
  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$", var.service_name))
    error_message = "service_name must be 1-20 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "image" {
  type        = string
  description = "The server image to run (`deployer build` pushes it and fills this in)."
  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^\\s:@]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must be a full image reference with a tag or digest."
  }
}

variable "web_app_users" {
  type        = list(string)
  description = "Who may use MLflow: user:EMAIL, group:EMAIL, domain:DOMAIN or serviceAccount:EMAIL."
  validation {
    condition     = length(var.web_app_users) > 0
    error_message = "web_app_users must name at least one member, or nobody can reach the server."
  }
  validation {
    condition = alltrue([
      for m in var.web_app_users :
      can(regex("^(user|group|serviceAccount):[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$|^domain:[a-z0-9.-]+\\.[a-z]{2,}$", m))
    ])
    error_message = "Each member must be user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:DOMAIN."
  }
}

variable "web_app_admins" {
  type        = list(string)
  description = "MLflow administrators: user:EMAIL or serviceAccount:EMAIL, passed to the server as ADMIN_EMAILS. Empty: the deployer decides (the deploying owner)."
  default     = []
  validation {
    condition     = alltrue([for m in var.web_app_admins : can(regex("^(user|serviceAccount):[^@\\s:,]+@[^@\\s:,]+\\.[a-z]{2,}$", m))])
    error_message = "Each admin must be user:EMAIL or serviceAccount:EMAIL (no commas: the server reads them as one comma-separated ADMIN_EMAILS)."
  }
}

variable "iap_programmatic_clients" {
  type        = list(string)
  description = "Desktop OAuth client IDs allowlisted for programmatic access, so `deployer login` gives runs from code the researcher's own email. Empty: code runs as the client service account."
  default     = []
  validation {
    condition     = alltrue([for c in var.iap_programmatic_clients : can(regex("^[0-9]+-[a-z0-9]+\\.apps\\.googleusercontent\\.com$", c))])
    error_message = "Each programmatic client must be an OAuth client ID such as 1234-abcd.apps.googleusercontent.com."
  }
}

variable "network_name" {
  type        = string
  description = "An existing VPC network to reuse; empty creates SERVICE_NAME-network."
  default     = ""
  validation {
    condition     = var.network_name == "" || can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.network_name))
    error_message = "network_name must be a VPC network name, or empty."
  }
}

variable "subnetwork_name" {
  type        = string
  description = "With network_name and vpc_egress = \"direct\": the existing subnetwork Cloud Run joins."
  default     = ""
  validation {
    condition     = var.subnetwork_name == "" || can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.subnetwork_name))
    error_message = "subnetwork_name must be a subnetwork name, or empty."
  }
  validation {
    condition     = !(var.vpc_egress == "direct" && var.network_name != "" && var.subnetwork_name == "")
    error_message = "Direct VPC egress into an existing network needs subnetwork_name."
  }
}

# Direct VPC egress is the default: no standing instances, so nothing bills while idle, and
# Google recommends it over connectors for new setups ("Direct VPC egress ... lower latency,
# higher throughput, lower costs" - https://cloud.google.com/run/docs/configuring/connecting-vpc).
# Its documented cost is a slower first connection at instance start ("a minute or more",
# https://cloud.google.com/run/docs/configuring/vpc-direct-vpc#limitations), which the service's
# startup probe allows for. Its subnetwork needs free addresses for twice the instances.
variable "vpc_egress" {
  type        = string
  description = "How Cloud Run reaches Cloud SQL's private IP. \"direct\": Direct VPC egress, no standing instances (no extra cost; a minute or more to connect at instance start). \"connector\": a serverless VPC connector, 2 always-on e2-micro instances (about $12/month)."
  default     = "direct"
  validation {
    condition     = contains(["connector", "direct"], var.vpc_egress)
    error_message = "vpc_egress must be \"connector\" or \"direct\"."
  }
}

variable "private_services_cidr" {
  type        = string
  description = "The range reserved for private services access (Cloud SQL's private IP); /24 or larger, clear of the network's other ranges."
  default     = "10.9.0.0/20"
  validation {
    condition     = can(cidrnetmask(var.private_services_cidr)) && tonumber(split("/", var.private_services_cidr)[1]) <= 24 && cidrhost(var.private_services_cidr, 0) == split("/", var.private_services_cidr)[0]
    error_message = "private_services_cidr must be an IPv4 range of /24 or larger starting on its boundary, such as 10.9.0.0/20."
  }
}

variable "reuse_private_services_access" {
  type        = bool
  description = "network_name already has private services access (a servicenetworking peering): use it, create no range or connection."
  default     = false
  validation {
    condition     = !(var.reuse_private_services_access && var.network_name == "")
    error_message = "reuse_private_services_access needs network_name: a network created here has no private services access yet."
  }
}

variable "connector_cidr" {
  type        = string
  description = "The /28 range of the serverless VPC connector; must not overlap the network's ranges."
  default     = "10.8.1.0/28"
  validation {
    condition     = can(cidrnetmask(var.connector_cidr)) && endswith(var.connector_cidr, "/28")
    error_message = "connector_cidr must be an IPv4 /28 range, such as 10.8.1.0/28."
  }
}

variable "subnetwork_cidr" {
  type        = string
  description = "Range of the subnetwork created for Direct VPC egress in a new network."
  default     = "10.8.0.0/26"
  validation {
    condition     = can(cidrnetmask(var.subnetwork_cidr)) && tonumber(split("/", var.subnetwork_cidr)[1]) <= 26
    error_message = "subnetwork_cidr must be an IPv4 range of /26 or larger, such as 10.8.0.0/26."
  }
}

variable "db_engine" {
  type        = string
  description = "Database engine: \"postgresql\" (PostgreSQL 16) or \"mysql\" (MySQL 8.4)."
  default     = "postgresql"
  validation {
    condition     = contains(["postgresql", "mysql"], var.db_engine)
    error_message = "db_engine must be \"postgresql\" or \"mysql\"."
  }
}

variable "db_tier" {
  type        = string
  description = "Cloud SQL tier: db-f1-micro (about $8/month, 25 connections), db-g1-small (about $26/month, 50), db-custom-CPUS-MEMORY_MB, or db-perf-optimized-N-CPUS (ENTERPRISE_PLUS). The edition is chosen to fit."
  default     = "db-f1-micro"
  validation {
    condition     = can(regex("^db-(f1-micro|g1-small|custom-[0-9]+-[0-9]+|perf-optimized-N-[0-9]+)$", var.db_tier))
    error_message = "db_tier must be db-f1-micro, db-g1-small, db-custom-CPUS-MEMORY_MB or db-perf-optimized-N-CPUS."
  }
}

variable "db_reserved_connections" {
  type        = number
  description = "Database connections kept free for the migration job and administrators."
  default     = 5
  validation {
    condition     = var.db_reserved_connections >= 3 && var.db_reserved_connections <= 100
    error_message = "db_reserved_connections must be between 3 and 100."
  }
}

# The database sleeps by default, after an hour without a request. The teams this is for use the
# tracker in bursts and leave it idle nights, weekends and between projects: an hour keeps it
# awake through a working session with breaks (a meeting, lunch) and still stops it for the
# ~2/3 of a month nobody uses it, which is most of the idle bill. Waking costs the first request
# of a session a wait of about a minute, which clients ride out (503 + Retry-After). 0 = never.
variable "db_sleep_after_minutes" {
  type        = number
  description = "Stop the Cloud SQL instance after this many minutes without a request (the next request starts it again, answering 503 + Retry-After for about a minute until it is up). 0 = never stop it."
  default     = 60
  validation {
    condition     = var.db_sleep_after_minutes == 0 || (var.db_sleep_after_minutes >= 15 && var.db_sleep_after_minutes <= 10080)
    error_message = "db_sleep_after_minutes must be 0 (never) or between 15 and 10080 (a week): shorter idle times would stop and start the database within a working session."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the database from deletion (in Terraform and in Cloud SQL). `deployer destroy --delete-data` turns it off first; the service and job hold no data and are never protected."
  default     = true
}

variable "artifacts_force_destroy" {
  type        = bool
  description = "Let destroy delete the artifact bucket with everything in it. Off: artifacts survive a destroy."
  default     = false
}

variable "artifacts_bucket_name" {
  type        = string
  description = "Name of the artifact bucket; empty uses PROJECT_ID-NAME-artifacts (NAME: service_name, plus -ENVIRONMENT outside the default environment)."
  default     = ""
  validation {
    condition     = var.artifacts_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$", var.artifacts_bucket_name))
    error_message = "artifacts_bucket_name must be a valid bucket name, or empty."
  }
}

variable "min_instances" {
  type        = number
  description = "Cloud Run instances kept warm. 0 scales to zero (no cost when idle, a few seconds of cold start); each warm instance bills around the clock."
  default     = 0
  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 10
    error_message = "min_instances must be between 0 and 10."
  }
}

variable "max_instances" {
  type        = number
  description = "Cloud Run instances at most. Each opens (server_workers + 1) x 2 connection pools, which must fit the tier's connection cap."
  default     = 1
  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 100
    error_message = "max_instances must be between 1 and 100."
  }
  validation {
    condition     = var.max_instances >= var.min_instances
    error_message = "max_instances must be at least min_instances."
  }
  validation {
    # Each engine needs 2 connections at least (MLflow cannot turn pool overflow off).
    condition = (
      var.max_instances * (var.server_workers + 1) * 2 * 2 <=
      lookup(jsondecode(file("${path.module}/../deployer/limits.json")).db_tier_max_connections, var.db_tier, jsondecode(file("${path.module}/../deployer/limits.json")).db_default_max_connections) - var.db_reserved_connections
    )
    error_message = "max_instances x (server_workers + 1) processes x 2 pools x 2 connections exceeds the db_tier's connection cap minus db_reserved_connections: lower max_instances or server_workers, or pick a larger tier."
  }
}

variable "server_workers" {
  type        = number
  description = "Server worker processes per instance."
  default     = 2
  validation {
    condition     = var.server_workers >= 1 && var.server_workers <= 8
    error_message = "server_workers must be between 1 and 8."
  }
}

variable "server_threads" {
  type        = number
  description = "Threads per worker process."
  default     = 4
  validation {
    condition     = var.server_threads >= 1 && var.server_threads <= 32
    error_message = "server_threads must be between 1 and 32."
  }
}

variable "cpu" {
  type        = string
  description = "vCPUs per Cloud Run instance."
  default     = "1"
  validation {
    condition     = contains(["1", "2", "4"], var.cpu)
    error_message = "cpu must be \"1\", \"2\" or \"4\"."
  }
}

variable "memory" {
  type        = string
  description = "Memory per Cloud Run instance (the server needs about 400 MiB with 2 workers)."
  default     = "1Gi"
  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must look like 512Mi or 2Gi."
  }
  validation {
    # Cloud Run's memory range for the vCPU count, kept once in deployer/limits.json (a
    # malformed memory or cpu is reported by its own rule, hence the try).
    condition = try(
      tonumber(regex("^[0-9]+", var.memory)) * (endswith(var.memory, "Gi") ? 1024 : 1) >= jsondecode(file("${path.module}/../deployer/limits.json")).cloud_run_memory_mib_by_cpu[var.cpu][0] &&
      tonumber(regex("^[0-9]+", var.memory)) * (endswith(var.memory, "Gi") ? 1024 : 1) <= jsondecode(file("${path.module}/../deployer/limits.json")).cloud_run_memory_mib_by_cpu[var.cpu][1],
      true
    )
    error_message = "memory must fit Cloud Run's range for the cpu count (1 vCPU: 512Mi to 4Gi, 2: 512Mi to 8Gi, 4: 2Gi to 16Gi; deployer/limits.json): change memory or cpu."
  }
}

variable "custom_domain" {
  type        = string
  description = "A custom domain mapped to the service, which the server must accept as a host (empty for none)."
  default     = ""
  validation {
    condition     = var.custom_domain == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.custom_domain))
    error_message = "custom_domain must be a host name such as mlflow.example.com, or empty."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every labelled resource (app and managed-by are always set)."
  default     = {}
  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "Label keys must be lowercase, start with a letter and be at most 63 characters; values lowercase letters, digits, _ and - only."
  }
}

variable "github_repository" {
  type        = string
  description = "OWNER/REPO whose GitHub Actions may reach MLflow through Workload Identity Federation (no key files); empty for none."
  default     = ""
  validation {
    condition     = var.github_repository == "" || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be OWNER/REPO, or empty."
  }
}

variable "github_repository_id" {
  type        = string
  description = "Numeric id of github_repository (`gh api repos/OWNER/REPO --jq .id`): federation binds to it, not to the name, which someone else can register after a rename."
  default     = ""
  validation {
    condition     = can(regex("^[0-9]{0,20}$", var.github_repository_id))
    error_message = "github_repository_id must be digits (gh api repos/OWNER/REPO --jq .id), or empty."
  }
  validation {
    condition     = (var.github_repository == "") == (var.github_repository_id == "")
    error_message = "github_repository needs github_repository_id and github_repository_owner_id (gh api repos/OWNER/REPO --jq '.id, .owner.id'), and they need it."
  }
}

variable "github_repository_owner_id" {
  type        = string
  description = "Numeric id of github_repository's owner (`gh api repos/OWNER/REPO --jq .owner.id`), checked together with github_repository_id."
  default     = ""
  validation {
    condition     = can(regex("^[0-9]{0,20}$", var.github_repository_owner_id))
    error_message = "github_repository_owner_id must be digits (gh api repos/OWNER/REPO --jq .owner.id), or empty."
  }
  validation {
    condition     = (var.github_repository_id == "") == (var.github_repository_owner_id == "")
    error_message = "github_repository_id and github_repository_owner_id go together: set both or neither."
  }
}
