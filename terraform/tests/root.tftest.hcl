mock_provider "google" {
  source = "./tests"
}

mock_provider "random" {}

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
    vpc_egress   = "direct"
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
