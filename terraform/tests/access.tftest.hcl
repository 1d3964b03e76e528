mock_provider "google" {
  source = "./tests"
}

variables {
  project_id    = "acme-ml"
  region        = "europe-west1"
  service_name  = "mlflow"
  web_app_users = ["user:alice@example.com", "group:ml-team@example.com", "domain:example.org"]
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

run "github_federation_is_scoped_to_one_repository" {
  command = apply
  module {
    source = "./modules/access"
  }
  variables {
    github_repository = "acme/ml-models"
  }
  assert {
    condition     = google_iam_workload_identity_pool_provider.github[0].attribute_condition == "assertion.repository == 'acme/ml-models'"
    error_message = "only this repository's workflows may exchange tokens"
  }
  assert {
    condition     = endswith(google_service_account_iam_member.github[0].member, "/attribute.repository/acme/ml-models") && google_service_account_iam_member.github[0].role == "roles/iam.serviceAccountTokenCreator"
    error_message = "the federated repository may sign as the client account"
  }
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
