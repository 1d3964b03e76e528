output "job_name" {
  description = "The Cloud Run job that stops the idle database."
  value       = google_cloud_run_v2_job.sleeper.name
}

output "schedule" {
  description = "How often the job looks (cron, UTC)."
  value       = google_cloud_scheduler_job.sleeper.schedule
}

output "role_id" {
  description = "The custom role (get and update one Cloud SQL instance) the server and the job hold."
  value       = google_project_iam_custom_role.sql_activation.name
}
