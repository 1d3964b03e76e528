locals {
  create_network = var.network_name == ""
  network_id     = local.create_network ? google_compute_network.this[0].id : data.google_compute_network.existing[0].id
  network_name   = local.create_network ? google_compute_network.this[0].name : data.google_compute_network.existing[0].name
  subnetwork = (
    var.vpc_egress != "direct" ? null :
    local.create_network ? google_compute_subnetwork.serverless[0].name : var.subnetwork_name
  )
}

resource "google_compute_network" "this" {
  count = local.create_network ? 1 : 0

  project                 = var.project_id
  name                    = "${var.name_prefix}-network"
  auto_create_subnetworks = false
  description             = "Private network for MLflow: Cloud SQL and serverless egress."
}

# A network of our own admits nothing from outside: Cloud SQL is reached by egress only.
resource "google_compute_firewall" "deny_ingress" {
  count = local.create_network ? 1 : 0

  project     = var.project_id
  name        = "${var.name_prefix}-deny-ingress"
  network     = google_compute_network.this[0].id
  direction   = "INGRESS"
  priority    = 65534
  description = "Deny all ingress; Google-managed rules for the VPC connector take precedence."

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

data "google_compute_network" "existing" {
  count = local.create_network ? 0 : 1

  project = var.project_id
  name    = var.network_name
}

# Direct VPC egress: Cloud Run instances take addresses from this subnetwork.
resource "google_compute_subnetwork" "serverless" {
  count = local.create_network && var.vpc_egress == "direct" ? 1 : 0

  project                  = var.project_id
  name                     = "${var.name_prefix}-serverless"
  region                   = var.region
  network                  = local.network_id
  ip_cidr_range            = var.subnetwork_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private services access: Cloud SQL gets a private IP in this network and no public one. The
# range is pinned (private_services_cidr), so it never lands where the network grows later.
# A network that already has private services access (reuse_private_services_access) keeps its
# own connection: a second CreateConnection with other ranges fails ("Cannot modify allocated
# ranges in CreateConnection"), and Cloud SQL takes an IP from the existing ranges.
resource "google_compute_global_address" "private_services" {
  count = var.reuse_private_services_access ? 0 : 1

  project       = var.project_id
  name          = "${var.name_prefix}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  address       = split("/", var.private_services_cidr)[0]
  prefix_length = tonumber(split("/", var.private_services_cidr)[1])
  network       = local.network_id
}

# Destroying the connection fails while Cloud SQL still holds resources behind it (it keeps them
# for days after an instance is deleted), hence ABANDON; the VPC peering it made is then removed
# by `deployer destroy --delete-data` before the network goes (see deployer/deploy.py).
resource "google_service_networking_connection" "private_services" {
  count = var.reuse_private_services_access ? 0 : 1

  network                 = local.network_id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services[0].name]
  deletion_policy         = "ABANDON"
  # Service Networking remembers a network's connection after the network is deleted, so a
  # re-created network of the same name fails CreateConnection: update it instead ("enforce an
  # update of the reserved peering ranges on the existing service networking connection in case
  # of a new connection creation failure" - the provider's docs). Only for a network made here:
  # on someone else's network it would replace their ranges.
  update_on_creation_fail = local.create_network
}

resource "google_vpc_access_connector" "this" {
  count = var.vpc_egress == "connector" ? 1 : 0

  project       = var.project_id
  name          = var.connector_name
  region        = var.region
  network       = local.network_name
  ip_cidr_range = var.connector_cidr
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3
}
