mock_provider "google" {
  source = "./tests"
}

variables {
  project_id  = "acme-ml"
  region      = "europe-west1"
  name_prefix = "mlflow"
}

run "a_connector_in_a_new_network" {
  command = apply
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress = "connector"
  }
  assert {
    condition     = length(google_vpc_access_connector.this) == 1 && google_vpc_access_connector.this[0].ip_cidr_range == "10.8.1.0/28"
    error_message = "a serverless VPC connector on the /28 range is expected"
  }
  assert {
    condition     = google_vpc_access_connector.this[0].machine_type == "e2-micro" && google_vpc_access_connector.this[0].min_instances == 2
    error_message = "the connector should be the cheapest shape: 2 x e2-micro"
  }
  assert {
    condition     = length(google_compute_network.this) == 1 && length(google_compute_subnetwork.serverless) == 0
    error_message = "a new network without a Direct VPC egress subnetwork is expected"
  }
  assert {
    condition     = output.subnetwork == null && output.connector_id != null
    error_message = "connector egress exposes the connector and no subnetwork"
  }
  assert {
    condition     = google_compute_global_address.private_services[0].purpose == "VPC_PEERING"
    error_message = "Cloud SQL needs a private services range"
  }
  assert {
    condition     = google_compute_global_address.private_services[0].address == "10.9.0.0" && google_compute_global_address.private_services[0].prefix_length == 20
    error_message = "the private services range is pinned (private_services_cidr), not left to Google"
  }
  assert {
    condition     = length(google_service_networking_connection.private_services) == 1 && output.private_services_range == "mlflow-private-services"
    error_message = "a new network gets its own private services connection"
  }
  assert {
    condition     = google_service_networking_connection.private_services[0].update_on_creation_fail
    error_message = "a re-created network must take over the connection Service Networking remembers"
  }
  assert {
    condition     = length(google_compute_firewall.deny_ingress) == 1
    error_message = "a network we create must deny ingress"
  }
}

run "direct_egress_has_no_standing_instances" {
  command = apply
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress = "direct"
  }
  assert {
    condition     = length(google_vpc_access_connector.this) == 0
    error_message = "Direct VPC egress must not create a connector"
  }
  assert {
    condition     = length(google_compute_subnetwork.serverless) == 1 && output.subnetwork == "mlflow-serverless"
    error_message = "Direct VPC egress needs the serverless subnetwork"
  }
  assert {
    condition     = output.connector_id == null
    error_message = "no connector id with direct egress"
  }
}

run "an_existing_network_is_reused_not_created" {
  command = apply
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress      = "direct"
    network_name    = "shared-vpc"
    subnetwork_name = "team-subnet"
  }
  assert {
    condition     = length(google_compute_network.this) == 0 && length(google_compute_firewall.deny_ingress) == 0
    error_message = "an existing network must not be created or changed"
  }
  assert {
    condition     = output.network_name == "shared-vpc" && output.subnetwork == "team-subnet"
    error_message = "the existing network and subnetwork are used"
  }
}

run "an_existing_private_services_connection_is_reused" {
  command = apply
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress                    = "direct"
    network_name                  = "shared-vpc"
    subnetwork_name               = "team-subnet"
    reuse_private_services_access = true
  }
  assert {
    condition     = length(google_compute_global_address.private_services) == 0 && length(google_service_networking_connection.private_services) == 0
    error_message = "a network with private services access keeps its connection: CreateConnection with other ranges fails"
  }
  assert {
    condition     = output.private_services_range == null && output.private_services_connection == null
    error_message = "Cloud SQL then picks an IP from the existing ranges"
  }
}

run "reuse_needs_an_existing_network" {
  command = plan
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress                    = "direct"
    reuse_private_services_access = true
  }
  expect_failures = [var.reuse_private_services_access]
}

run "private_services_range_is_a_slash_24_or_larger" {
  command = plan
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress            = "direct"
    private_services_cidr = "10.9.0.0/28"
  }
  expect_failures = [var.private_services_cidr]
}

run "private_services_range_starts_on_its_boundary" {
  command = plan
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress            = "direct"
    private_services_cidr = "10.9.3.0/20"
  }
  expect_failures = [var.private_services_cidr]
}

run "connector_range_must_be_a_slash_28" {
  command = plan
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress     = "connector"
    connector_cidr = "10.8.0.0/24"
  }
  expect_failures = [var.connector_cidr]
}

run "egress_mode_is_one_of_two" {
  command = plan
  module {
    source = "./modules/network"
  }
  variables {
    vpc_egress = "vpn"
  }
  expect_failures = [var.vpc_egress]
}
