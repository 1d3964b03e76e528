output "name" {
  description = "The artifact bucket's name."
  value       = google_storage_bucket.artifacts.name
}

output "url" {
  description = "gs:// URL of the bucket."
  value       = google_storage_bucket.artifacts.url
}
