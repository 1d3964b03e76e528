locals {
  users     = toset(var.web_app_users)
  federated = var.github_repository_id != ""
  client    = "serviceAccount:${google_service_account.client.email}"
  # Keys must be known at plan time; the client account's email is not until it exists.
  iap_members = merge({ for m in local.users : m => m }, { "client-service-account" = local.client })
}

resource "google_service_account" "client" {
  project      = var.project_id
  account_id   = var.client_account_id
  display_name = "MLflow clients (researchers and CI sign tokens as this account)"
}

resource "google_iap_web_cloud_run_service_iam_member" "access" {
  for_each = local.iap_members

  project                = var.project_id
  location               = var.region
  cloud_run_service_name = var.service_name
  role                   = "roles/iap.httpsResourceAccessor"
  member                 = each.value
}

# Programs cannot send a person's own token to IAP: the team signs as the client account.
resource "google_service_account_iam_member" "token_creators" {
  for_each = local.users

  service_account_id = google_service_account.client.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

# Pools and providers stay soft-deleted for 30 days after a destroy, and their ids cannot be
# reused meanwhile: a random suffix (new after each destroy) lets a fresh deploy proceed.
resource "random_id" "pool_suffix" {
  count = local.federated ? 1 : 0

  byte_length = 2
}

resource "google_iam_workload_identity_pool" "github" {
  count = local.federated ? 1 : 0

  project                   = var.project_id
  workload_identity_pool_id = "${var.pool_id_prefix}-${random_id.pool_suffix[0].hex}"
  display_name              = "GitHub Actions"
}

resource "google_iam_workload_identity_pool_provider" "github" {
  #checkov:skip=CKV_GCP_125:attribute_condition pins assertion.repository_id and assertion.repository_owner_id to the configured repository's numeric ids (Google's recommended form); the check only recognises conditions on assertion.sub
  count = local.federated ? 1 : 0

  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.github[0].workload_identity_pool_id
  workload_identity_pool_provider_id = "github"
  display_name                       = "GitHub Actions OIDC"
  description                        = "GitHub Actions of ${var.github_repository} (repository id ${var.github_repository_id})"
  attribute_mapping = {
    "google.subject"                = "assertion.sub"
    "attribute.repository"          = "assertion.repository"
    "attribute.repository_id"       = "assertion.repository_id"
    "attribute.repository_owner_id" = "assertion.repository_owner_id"
    "attribute.ref"                 = "assertion.ref"
  }
  # Only this repository's workflows can exchange their tokens. The numeric ids, not the
  # OWNER/REPO name: after a rename or deletion someone else can register that name.
  attribute_condition = "assertion.repository_id == '${var.github_repository_id}' && assertion.repository_owner_id == '${var.github_repository_owner_id}'"

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
}

resource "google_service_account_iam_member" "github" {
  count = local.federated ? 1 : 0

  service_account_id = google_service_account.client.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.github[0].name}/attribute.repository_id/${var.github_repository_id}"
}
