output "repository" {
  description = "Image path prefix: REGION-docker.pkg.dev/PROJECT/REPOSITORY."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "repository_id" {
  description = "The repository's name."
  value       = google_artifact_registry_repository.images.repository_id
}
