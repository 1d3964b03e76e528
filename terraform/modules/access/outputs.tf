output "client_service_account" {
  description = "The account researchers and CI sign tokens as (MLFLOW_IAP_SERVICE_ACCOUNT)."
  value       = google_service_account.client.email
}

output "workload_identity_provider" {
  description = "The provider for google-github-actions/auth, or null without github_repository."
  value       = local.federated ? google_iam_workload_identity_pool_provider.github[0].name : null
}

output "workload_identity_pool_id" {
  description = "The Workload Identity pool's id, or null without GitHub federation."
  value       = local.federated ? google_iam_workload_identity_pool.github[0].workload_identity_pool_id : null
}
