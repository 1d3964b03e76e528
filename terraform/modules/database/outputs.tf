output "connection_name" {
  description = "PROJECT:REGION:INSTANCE, the name Cloud Run mounts under /cloudsql."
  value       = google_sql_database_instance.this.connection_name
}

output "instance_name" {
  description = "The Cloud SQL instance's name."
  value       = google_sql_database_instance.this.name
}

output "engine" {
  description = "postgresql or mysql, as the server's DB_ENGINE expects."
  value       = var.engine
}

output "edition" {
  description = "The Cloud SQL edition chosen to fit the tier."
  value       = local.edition
}

output "database_name" {
  description = "The MLflow database."
  value       = google_sql_database.mlflow.name
}

output "user_name" {
  description = "The database user the server logs in as."
  value       = google_sql_user.mlflow.name
}

output "password_secret_version" {
  description = "The secret version holding the password (depend on it, not only on the secret)."
  value       = google_secret_manager_secret_version.db_password.id
}

output "password_secret_id" {
  description = "The Secret Manager secret holding the database password."
  value       = google_secret_manager_secret.db_password.secret_id
}

output "password_secret_name" {
  description = "The secret's full resource name, for IAM bindings."
  value       = google_secret_manager_secret.db_password.id
}
