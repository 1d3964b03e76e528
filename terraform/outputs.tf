output "service_url" {
  description = "The MLflow URL (MLFLOW_TRACKING_URI); stable across redeploys."
  value       = module.service.service_url
}

output "iap_audience" {
  description = "The `aud` of IAP's signed header, as the server verifies it."
  value       = module.service.iap_audience
}

output "client_audience" {
  description = "The `aud` clients put in the tokens they send to IAP."
  value       = "${module.service.service_url}/*"
}

output "client_service_account" {
  description = "The account researchers and CI sign as (MLFLOW_IAP_SERVICE_ACCOUNT)."
  value       = module.access.client_service_account
}

output "runtime_service_account" {
  description = "The server's own service account."
  value       = module.service.runtime_service_account
}

output "artifacts_bucket" {
  description = "The artifact bucket."
  value       = module.artifacts.name
}

output "cloud_sql_connection_name" {
  description = "PROJECT:REGION:INSTANCE of the database."
  value       = module.database.connection_name
}

output "migration_job_name" {
  description = "The Cloud Run job that migrates the schema; Terraform executes it before each rollout of a new image."
  value       = module.service.migration_job_name
}

output "image_repository" {
  description = "Where `deployer build` pushes the server image."
  value       = module.registry.repository
}

output "workload_identity_provider" {
  description = "For google-github-actions/auth, when github_repository is set."
  value       = module.access.workload_identity_provider
}

output "service_name" {
  description = "The Cloud Run service's name."
  value       = module.service.service_name
}

output "region" {
  description = "The region everything runs in."
  value       = var.region
}

output "project_id" {
  description = "The project everything runs in."
  value       = var.project_id
}

output "environment" {
  description = "The environment this state belongs to."
  value       = var.environment
}

output "resource_names" {
  description = "The ids this deployment gives its resources, derived from service_name and environment."
  value = merge(local.ids, {
    service = module.service.service_name
    job     = module.service.migration_job_name
    bucket  = local.bucket_name
    pool    = module.access.workload_identity_pool_id
    network = module.network.network_name
  })
}

output "sleeper_job_name" {
  description = "The Cloud Run job that stops the idle database (null when db_sleep_after_minutes = 0)."
  value       = var.db_sleep_after_minutes > 0 ? module.sleep[0].job_name : null
}

output "iap_programmatic_clients" {
  description = "Desktop OAuth clients IAP allowlists for programmatic access: `deployer env` exports the first as MLFLOW_IAP_OAUTH_CLIENT_ID for `deployer login`."
  value       = var.iap_programmatic_clients
}
