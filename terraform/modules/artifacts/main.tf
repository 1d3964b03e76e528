# trivy:ignore:AVD-GCP-0066 Google-managed encryption: a customer-managed KMS key adds cost and key operations a small team does not need; access is IAM-only and private
resource "google_storage_bucket" "artifacts" {
  #checkov:skip=CKV_GCP_62:every object access goes through the MLflow server, whose request log Cloud Run keeps; a second bucket for access logs would double the storage to manage
  project                     = var.project_id
  name                        = var.bucket_name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = 7 * 24 * 3600
  }

  # Old versions of overwritten artifacts cost money: drop them after a while.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Uploads that clients abandoned half way (multipart) are removed after a week.
  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}
