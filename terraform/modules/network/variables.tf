variable "project_id" {
  type        = string
  description = "The GCP project."
}

variable "region" {
  type        = string
  description = "Region of the serverless VPC connector and the subnetwork."
}

variable "name_prefix" {
  type        = string
  description = "Prefix for the names of the resources this module creates."
}

variable "connector_name" {
  type        = string
  description = "Name of the serverless VPC connector (vpc_egress = \"connector\")."
  default     = "mlflow-conn"
  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,23}[a-z0-9]$", var.connector_name))
    error_message = "connector_name must be 2-25 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "private_services_cidr" {
  type        = string
  description = "The range reserved for private services access (Cloud SQL's private IPs); /24 or larger, not overlapping the network's subnetworks."
  default     = "10.9.0.0/20"
  validation {
    condition     = can(cidrnetmask(var.private_services_cidr)) && tonumber(split("/", var.private_services_cidr)[1]) <= 24 && cidrhost(var.private_services_cidr, 0) == split("/", var.private_services_cidr)[0]
    error_message = "private_services_cidr must be an IPv4 range of /24 or larger starting on its boundary, such as 10.9.0.0/20."
  }
}

variable "reuse_private_services_access" {
  type        = bool
  description = "The existing network (network_name) already has private services access: use it and create no range or connection."
  default     = false
  validation {
    condition     = !(var.reuse_private_services_access && var.network_name == "")
    error_message = "reuse_private_services_access needs network_name: a network created here has no private services access yet."
  }
}

variable "network_name" {
  type        = string
  description = "An existing VPC network to use; empty creates a new one named NAME_PREFIX-network."
  default     = ""
}

variable "subnetwork_name" {
  type        = string
  description = "With an existing network and vpc_egress = \"direct\": the subnetwork Cloud Run instances join."
  default     = ""
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

variable "vpc_egress" {
  type        = string
  description = "How Cloud Run reaches Cloud SQL's private IP: \"connector\" (serverless VPC connector) or \"direct\" (Direct VPC egress)."
  validation {
    condition     = contains(["connector", "direct"], var.vpc_egress)
    error_message = "vpc_egress must be \"connector\" or \"direct\"."
  }
}

variable "connector_cidr" {
  type        = string
  description = "The /28 range of the serverless VPC connector (vpc_egress = \"connector\")."
  default     = "10.8.1.0/28"
  validation {
    condition     = can(cidrnetmask(var.connector_cidr)) && endswith(var.connector_cidr, "/28")
    error_message = "connector_cidr must be an IPv4 /28 range, such as 10.8.1.0/28."
  }
}
