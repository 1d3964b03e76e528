locals {
  # Cloud Run's deterministic URL is known before the service exists, so the server can be told
  # its own host name in the same apply (redeploys keep it).
  deterministic_host = "${var.service_name}-${var.project_number}.${var.region}.run.app"
  allowed_hosts      = compact([local.deterministic_host, "${var.service_name}-*.a.run.app", var.custom_domain])
  cors_origins       = [for h in compact([local.deterministic_host, var.custom_domain]) : "https://${h}"]
  iap_audience       = "/projects/${var.project_number}/locations/${var.region}/services/${var.service_name}"
  iap_service_agent  = "serviceAccount:service-${var.project_number}@gcp-sa-iap.iam.gserviceaccount.com"
  runtime_member     = "serviceAccount:${google_service_account.runtime.email}"

  # The server's settings (deployer/server/settings.py reads exactly these names).
  env = {
    AUTH_MODE                 = "iap"
    IAP_AUDIENCE              = local.iap_audience
    SERVER_WORKERS            = tostring(var.workers)
    SERVER_THREADS            = tostring(var.threads)
    DB_ENGINE                 = var.database.engine
    DB_USER                   = var.database.user_name
    DB_NAME                   = var.database.database_name
    CLOUD_SQL_CONNECTION_NAME = var.database.connection_name
    DB_MAX_CONNECTIONS        = tostring(var.database.max_connections)
    DB_RESERVED_CONNECTIONS   = tostring(var.reserved_connections)
    MAX_INSTANCES             = tostring(var.max_instances)
    ARTIFACTS_DESTINATION     = "gs://${var.bucket_name}/artifacts"
    ALLOWED_HOSTS             = join(",", local.allowed_hosts)
    CORS_ALLOWED_ORIGINS      = join(",", local.cors_origins)
    SIGNING_SERVICE_ACCOUNT   = google_service_account.runtime.email
    GOOGLE_CLOUD_PROJECT      = var.project_id
  }
}

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = substr("${var.service_name}-server", 0, 30)
  display_name = "MLflow server (Cloud Run runtime)"
}

# Least privilege: exactly these four grants, and only the first is project-wide.
resource "google_project_iam_member" "cloudsql_client" {
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = local.runtime_member
}

resource "google_storage_bucket_iam_member" "artifacts" {
  bucket = var.bucket_name
  role   = "roles/storage.objectAdmin"
  member = local.runtime_member
}

resource "google_secret_manager_secret_iam_member" "db_password" {
  project   = var.project_id
  secret_id = var.database.password_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.runtime_member
}

# Signing GCS upload/download URLs through IAM signBlob (Cloud Run has no private key).
resource "google_service_account_iam_member" "self_signing" {
  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.runtime_member
}

resource "google_cloud_run_v2_service" "mlflow" {
  project             = var.project_id
  name                = var.service_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  iap_enabled         = true
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    service_account                  = google_service_account.runtime.email
    timeout                          = "900s"
    max_instance_request_concurrency = var.workers * var.threads
    labels                           = var.labels

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      connector = var.vpc_egress == "connector" ? var.connector_id : null
      egress    = "PRIVATE_RANGES_ONLY"
      dynamic "network_interfaces" {
        for_each = var.vpc_egress == "direct" ? [1] : []
        content {
          network    = var.network_name
          subnetwork = var.subnetwork
        }
      }
    }

    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [var.database.connection_name]
      }
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # Without this, setting resources switches the service to instance-based billing.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.env
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = "DB_PASSWORD"
        value_source {
          secret_key_ref {
            secret  = var.database.password_secret_id
            version = "latest"
          }
        }
      }

      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }

      startup_probe {
        period_seconds    = 2
        timeout_seconds   = 2
        failure_threshold = 30
        http_get {
          path = "/health"
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/health"
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.cloudsql_client,
    google_secret_manager_secret_iam_member.db_password,
    google_storage_bucket_iam_member.artifacts,
  ]
}

# IAP calls the service as its own service agent.
resource "google_cloud_run_v2_service_iam_member" "iap_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.mlflow.name
  role     = "roles/run.invoker"
  member   = local.iap_service_agent
}

# The schema migration, as its own step before a rollout (instances never race to migrate).
resource "google_cloud_run_v2_job" "migrate" {
  project             = var.project_id
  name                = "${var.service_name}-migrate"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    task_count  = 1
    parallelism = 1
    labels      = var.labels

    template {
      service_account = google_service_account.runtime.email
      max_retries     = 1
      timeout         = "600s"

      vpc_access {
        connector = var.vpc_egress == "connector" ? var.connector_id : null
        egress    = "PRIVATE_RANGES_ONLY"
        dynamic "network_interfaces" {
          for_each = var.vpc_egress == "direct" ? [1] : []
          content {
            network    = var.network_name
            subnetwork = var.subnetwork
          }
        }
      }

      volumes {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [var.database.connection_name]
        }
      }

      containers {
        image = var.image
        args  = ["migrate"]

        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }

        dynamic "env" {
          for_each = local.env
          content {
            name  = env.key
            value = env.value
          }
        }

        env {
          name = "DB_PASSWORD"
          value_source {
            secret_key_ref {
              secret  = var.database.password_secret_id
              version = "latest"
            }
          }
        }

        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.cloudsql_client,
    google_secret_manager_secret_iam_member.db_password,
  ]
}
