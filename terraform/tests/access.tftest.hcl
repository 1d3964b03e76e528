mock_provider "google" {
  source = "./tests"
}

mock_provider "random" {
  mock_resource "random_id" {
    defaults = { hex = "a1b2" }
  }
}

variables {
  project_id        = "acme-ml"
  region            = "europe-west1"
  service_name      = "mlflow"
  web_app_users     = ["user:alice@example.com", "group:ml-team@example.com", "domain:example.org"]
  client_account_id = "mlflow-log-pusher"
}

run "users_and_the_client_account_get_iap_access" {
  command = apply
  module {
    source = "./modules/access"
  }
  assert {
    condition     = length(google_iap_web_cloud_run_service_iam_member.access) == 4
    error_message = "three members plus the client account"
  }
  assert {
    condition     = alltrue([for m in google_iap_web_cloud_run_service_iam_member.access : m.role == "roles/iap.httpsResourceAccessor" && m.cloud_run_service_name == "mlflow"])
    error_message = "IAP access on this service only"
  }
  assert {
    condition     = toset([for m in google_service_account_iam_member.token_creators : m.member]) == toset(var.web_app_users)
    error_message = "every web_app_users member may sign as the client account"
  }
  assert {
    condition     = length(google_iam_workload_identity_pool.github) == 0
    error_message = "no federation without github_repository"
  }
}

run "github_federation_is_bound_to_the_repository_ids_not_its_name" {
  command = apply
  module {
    source = "./modules/access"
  }
  variables {
    github_repository          = "acme/ml-models"
    github_repository_id       = "123456789"
    github_repository_owner_id = "4242"
  }
  assert {
    condition     = google_iam_workload_identity_pool_provider.github[0].attribute_condition == "assertion.repository_id == '123456789' && assertion.repository_owner_id == '4242'"
    error_message = "only this repository's workflows may exchange tokens, by numeric ids"
  }
  assert {
    condition     = endswith(google_service_account_iam_member.github[0].member, "/attribute.repository_id/123456789") && google_service_account_iam_member.github[0].role == "roles/iam.serviceAccountTokenCreator"
    error_message = "the federated repository (by id) may sign as the client account"
  }
  assert {
    condition     = google_iam_workload_identity_pool_provider.github[0].attribute_mapping["attribute.repository_id"] == "assertion.repository_id"
    error_message = "the binding's attribute must be mapped"
  }
  assert {
    # Pools stay soft-deleted for 30 days: a random suffix keeps a re-create from colliding.
    condition     = startswith(google_iam_workload_identity_pool.github[0].workload_identity_pool_id, "mlflow-github-") && length(google_iam_workload_identity_pool.github[0].workload_identity_pool_id) <= 32 && google_iam_workload_identity_pool.github[0].workload_identity_pool_id != "mlflow-github-"
    error_message = "the pool id is the prefix plus a random suffix, at most 32 characters"
  }
}

run "repository_ids_go_together" {
  command = plan
  module {
    source = "./modules/access"
  }
  variables {
    github_repository_id = "123456789"
  }
  expect_failures = [var.github_repository_owner_id]
}

run "repository_ids_are_numeric" {
  command = plan
  module {
    source = "./modules/access"
  }
  variables {
    github_repository_id       = "acme/ml-models"
    github_repository_owner_id = "4242"
  }
  expect_failures = [var.github_repository_id]
}

run "members_need_a_kind_prefix" {
  command = plan
  module {
    source = "./modules/access"
  }
  variables {
    web_app_users = ["alice@example.com"]
  }
  expect_failures = [var.web_app_users]
}
