output "service_url" {
  description = "The service's URL (Cloud Run's deterministic one; stable across redeploys)."
  value       = "https://${local.deterministic_host}"
}

output "uri" {
  description = "The URL Cloud Run reports for the service."
  value       = google_cloud_run_v2_service.mlflow.uri
}

output "service_name" {
  description = "The Cloud Run service's name."
  value       = google_cloud_run_v2_service.mlflow.name
}

output "iap_audience" {
  description = "The audience of IAP's signed header, as the server verifies it."
  value       = local.iap_audience
}

output "runtime_service_account" {
  description = "The server's own service account."
  value       = google_service_account.runtime.email
}

output "migration_job_name" {
  description = "The Cloud Run job that migrates the schema."
  value       = google_cloud_run_v2_job.migrate.name
}

output "env" {
  description = "The server's settings (non-secret)."
  value       = local.env
}

output "migration_execution_token" {
  description = "The token of the migration job's execution for this image (it changes with the image)."
  value       = google_cloud_run_v2_job.migrate.run_execution_token
}
