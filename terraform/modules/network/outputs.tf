output "network_id" {
  description = "The VPC network's id (projects/P/global/networks/N)."
  value       = local.network_id
}

output "network_name" {
  description = "The VPC network's name."
  value       = local.network_name
}

output "connector_id" {
  description = "The serverless VPC connector's id, or null with Direct VPC egress."
  value       = var.vpc_egress == "connector" ? google_vpc_access_connector.this[0].id : null
}

output "subnetwork" {
  description = "The subnetwork Cloud Run joins with Direct VPC egress, or null with a connector."
  value       = local.subnetwork
}

output "private_services_range" {
  description = "Name of the private services range Cloud SQL takes its IP from, or null when an existing connection is reused."
  value       = var.reuse_private_services_access ? null : google_compute_global_address.private_services[0].name
}

output "private_services_connection" {
  description = "The private services connection Cloud SQL depends on."
  value       = var.reuse_private_services_access ? null : google_service_networking_connection.private_services[0].id
}
