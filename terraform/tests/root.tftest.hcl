mock_provider "google" {
  source = "./tests"
}

mock_provider "random" {
  # Four hex digits, as byte_length = 2 gives.
  mock_resource "random_id" {
    defaults = { hex = "a1b2" }
  }
}

variables {
  project_id    = "acme-ml"
  region        = "europe-west1"
  image         = "europe-west1-docker.pkg.dev/acme-ml/mlflow/mlflow-server:3f2a9c1d"
  web_app_users = ["user:alice@example.com"]
}

run "defaults_build_the_whole_stack" {
  command = apply
  assert {
    condition     = output.service_url == "https://mlflow-123456789012.europe-west1.run.app"
    error_message = "the URL is known up front"
  }
  assert {
    condition     = output.client_audience == "https://mlflow-123456789012.europe-west1.run.app/*"
    error_message = "clients sign tokens for the service URL"
  }
  assert {
    condition     = output.artifacts_bucket == "acme-ml-mlflow-artifacts" && output.image_repository == "europe-west1-docker.pkg.dev/acme-ml/mlflow"
    error_message = "bucket and registry follow the project and region"
  }
  assert {
    condition     = output.migration_job_name == "mlflow-migrate" && output.workload_identity_provider == null
    error_message = "migration job named after the service; no federation by default"
  }
}

run "a_second_environment_in_the_same_project_gets_its_own_names" {
  command = apply
  variables {
    environment = "staging"
  }
  assert {
    condition     = output.service_name == "mlflow-staging" && output.migration_job_name == "mlflow-staging-migrate"
    error_message = "service and job are named after service_name and environment"
  }
  assert {
    condition     = output.image_repository == "europe-west1-docker.pkg.dev/acme-ml/mlflow-staging" && output.artifacts_bucket == "acme-ml-mlflow-staging-artifacts"
    error_message = "registry and bucket are the environment's own"
  }
  assert {
    condition = (
      output.resource_names.runtime_account == "mlflow-staging-server" &&
      output.resource_names.client_account == "mlflow-staging-log-pusher" &&
      output.resource_names.secret == "mlflow-staging-db-password" &&
      output.resource_names.connector == "mlflow-staging-conn"
    )
    error_message = "project-wide ids (service accounts, secret) must differ between environments"
  }
  assert {
    condition     = output.service_url == "https://mlflow-staging-123456789012.europe-west1.run.app"
    error_message = "each environment has its own URL"
  }
}

run "the_longest_names_stay_within_gcps_limits" {
  command = apply
  variables {
    service_name               = "mlflow-tracking-team"
    environment                = "production-europe-01"
    github_repository          = "acme/ml-models"
    github_repository_id       = "123456789"
    github_repository_owner_id = "4242"
  }
  assert {
    condition = (
      can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", output.resource_names.runtime_account)) &&
      can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", output.resource_names.client_account))
    )
    error_message = "service account ids are 6-30 characters"
  }
  assert {
    condition     = length(output.resource_names.pool) <= 32 && length(output.resource_names.connector) <= 25 && length(output.artifacts_bucket) <= 63
    error_message = "pool ids are at most 32 characters, connector names 25, bucket names 63"
  }
  assert {
    condition     = length(output.migration_job_name) + 8 < 63 && length(output.service_name) <= 49
    error_message = "the job's name plus its 8-character execution token stays under 63; service names at most 49"
  }
  assert {
    condition     = output.resource_names.runtime_account != run.defaults_build_the_whole_stack.resource_names.runtime_account
    error_message = "cut names stay distinct"
  }
}

run "environment_format" {
  command = plan
  variables { environment = "Prod" }
  expect_failures = [var.environment]
}

run "github_federation_needs_the_numeric_ids" {
  command = plan
  variables { github_repository = "acme/ml-models" }
  expect_failures = [var.github_repository_id]
}

run "private_services_range_format" {
  command = plan
  variables { private_services_cidr = "10.9.0.0/28" }
  expect_failures = [var.private_services_cidr]
}

run "reapplying_the_same_settings_keeps_the_same_url" {
  command = apply
  assert {
    condition     = output.service_url == run.defaults_build_the_whole_stack.service_url
    error_message = "a redeploy must not change the URL"
  }
}

run "project_id_format" {
  command = plan
  variables { project_id = "My_Project" }
  expect_failures = [var.project_id]
}

run "region_format" {
  command = plan
  variables { region = "moon" }
  expect_failures = [var.region]
}

run "members_need_a_kind_prefix" {
  command = plan
  variables { web_app_users = ["alice@example.com"] }
  expect_failures = [var.web_app_users]
}

run "somebody_must_have_access" {
  command = plan
  variables { web_app_users = [] }
  expect_failures = [var.web_app_users]
}

run "instances_must_fit_the_tiers_connections" {
  command = plan
  variables {
    db_tier       = "db-f1-micro"
    max_instances = 2
  }
  expect_failures = [var.max_instances]
}

run "a_larger_tier_allows_more_instances" {
  command = plan
  variables {
    db_tier       = "db-g1-small"
    max_instances = 3
  }
}

run "min_instances_within_max" {
  command = plan
  variables {
    min_instances = 2
    max_instances = 1
  }
  expect_failures = [var.max_instances]
}

run "direct_egress_into_an_existing_network_needs_a_subnetwork" {
  command = plan
  variables {
    network_name = "shared-vpc"
  }
  expect_failures = [var.subnetwork_name]
}

run "tier_format" {
  command = plan
  variables { db_tier = "huge" }
  expect_failures = [var.db_tier]
}

run "label_format" {
  command = plan
  variables { labels = { "Team" = "ML" } }
  expect_failures = [var.labels]
}

run "github_repository_format" {
  command = plan
  variables { github_repository = "not a repo" }
  expect_failures = [var.github_repository]
}

run "custom_domain_format" {
  command = plan
  variables { custom_domain = "https://mlflow.example.com" }
  expect_failures = [var.custom_domain]
}
