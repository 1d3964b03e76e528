# A database that sleeps: a scheduled Cloud Run job stops the Cloud SQL instance (activation
# policy NEVER) when the server has recorded no request for sleep_after_minutes; the server
# starts it again (ALWAYS) on the next request (deployer/server/wake.py). A stopped instance
# bills no instance charges, only its storage ("set its activation policy to NEVER to avoid
# instance charges" - https://cloud.google.com/sql/docs/postgres/start-stop-restart-instance);
# a public IPv4 address bills while the instance is off (sql/docs/postgres/configure-ip), and
# this instance has none (its IP is private).
locals {
  job_name = "${var.name_prefix}-sleeper"
  # Looking every 5 minutes costs nothing measurable (a few seconds of a job, inside the free
  # tier); longer idle times need no finer granularity than a quarter of an hour.
  schedule       = var.sleep_after_minutes <= 60 ? "*/5 * * * *" : "*/15 * * * *"
  sleeper_member = "serviceAccount:${google_service_account.sleeper.email}"
  runtime_member = "serviceAccount:${var.runtime_service_account}"
  instance_rn    = "projects/${var.project_id}/instances/${var.instance_name}"
}

# Custom role ids stay reserved for weeks after deletion: a suffix lets a re-create proceed.
resource "random_id" "role_suffix" {
  byte_length = 3
}

# Least privilege: reading the instance (its state) and patching it (its activation policy).
# roles/cloudsql.editor would also let the holder delete databases, import, export, clone.
resource "google_project_iam_custom_role" "sql_activation" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_sql_activation_${random_id.role_suffix.hex}"
  title       = "Start and stop ${var.name_prefix}'s database"
  description = "Read a Cloud SQL instance and change its activation policy (the sleeping database)."
  permissions = ["cloudsql.instances.get", "cloudsql.instances.update"]
}

resource "google_service_account" "sleeper" {
  project      = var.project_id
  account_id   = var.sleeper_account_id
  display_name = "MLflow database sleeper (stops the idle Cloud SQL instance)"
}

# Both grants are limited to this one instance by an IAM condition on its resource name
# (https://cloud.google.com/sql/docs/postgres/iam-conditions).
resource "google_project_iam_member" "sleeper_sql" {
  project = var.project_id
  role    = google_project_iam_custom_role.sql_activation.name
  member  = local.sleeper_member
  condition {
    title      = "only-${var.instance_name}"
    expression = "resource.name == \"${local.instance_rn}\""
  }
}

resource "google_project_iam_member" "runtime_sql" {
  project = var.project_id
  role    = google_project_iam_custom_role.sql_activation.name
  member  = local.runtime_member
  condition {
    title      = "only-${var.instance_name}"
    expression = "resource.name == \"${local.instance_rn}\""
  }
}

# The job reads the last-request object and nothing else in the bucket.
resource "google_storage_bucket_iam_member" "sleeper_reads_last_request" {
  bucket = var.bucket_name
  role   = "roles/storage.objectViewer"
  member = local.sleeper_member
  condition {
    title      = "last-request-only"
    expression = "resource.name == \"projects/_/buckets/${var.bucket_name}/objects/${var.last_request_object}\""
  }
}

resource "google_cloud_run_v2_job" "sleeper" {
  project             = var.project_id
  name                = local.job_name
  location            = var.region
  deletion_protection = false
  labels              = var.labels

  template {
    task_count  = 1
    parallelism = 1
    labels      = var.labels

    template {
      service_account = google_service_account.sleeper.email
      max_retries     = 0
      timeout         = "300s"

      containers {
        image   = var.image
        command = ["python", "-m", "deployer.server.sleeper"]

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        env {
          name  = "CLOUD_SQL_CONNECTION_NAME"
          value = var.connection_name
        }
        env {
          name  = "DB_SLEEP_AFTER_MINUTES"
          value = tostring(var.sleep_after_minutes)
        }
        env {
          name  = "LAST_REQUEST_OBJECT"
          value = "gs://${var.bucket_name}/${var.last_request_object}"
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.sleeper_sql,
    google_storage_bucket_iam_member.sleeper_reads_last_request,
  ]
}

# Cloud Scheduler runs the job through the Run Admin API as the sleeper's own account, which
# may run this job and no other (roles/run.invoker on the job includes run.jobs.run).
resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_sleeper" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.sleeper.name
  role     = "roles/run.invoker"
  member   = local.sleeper_member
}

resource "google_cloud_scheduler_job" "sleeper" {
  project          = var.project_id
  region           = var.region
  name             = local.job_name
  description      = "Stop ${var.instance_name} after ${var.sleep_after_minutes} idle minutes."
  schedule         = local.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.sleeper.name}:run"
    oauth_token {
      service_account_email = google_service_account.sleeper.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs_sleeper]
}
