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
    # Bare emails of the MLflow administrators (IAM members without their kind prefix).
    ADMIN_EMAILS = join(",", [for m in var.web_app_admins : split(":", m)[1]])
    # The sleeping database (deployer/server/wake.py): 0 = never; otherwise the server records
    # its last request in this object and wakes the instance when a request finds it stopped.
    DB_SLEEP_AFTER_MINUTES = tostring(var.db_sleep_after_minutes)
    LAST_REQUEST_OBJECT    = var.db_sleep_after_minutes > 0 ? "gs://${var.bucket_name}/${var.last_request_object}" : ""
  }

  # One container spec for the service and the migration job, so the two can never disagree
  # on the image, the settings, the secret or the database socket. Nested blocks are rendered
  # from these with dynamic blocks in both resources.
  container = {
    image   = var.image
    env     = local.env
    secrets = { DB_PASSWORD = var.database.password_secret_id }
    volume  = { name = "cloudsql", mount_path = "/cloudsql", instances = [var.database.connection_name] }
  }
  vpc_access = {
    connector  = var.vpc_egress == "connector" ? var.connector_id : null
    egress     = "PRIVATE_RANGES_ONLY"
    interfaces = var.vpc_egress == "direct" ? [{ network = var.network_name, subnetwork = var.subnetwork }] : []
  }
  # A new execution of the migration job for every new image (and only then): Cloud Run names
  # the execution JOB-TOKEN, and JOB + TOKEN must stay under 63 characters.
  migration_token = substr(sha256(var.image), 0, 8)
  job_name        = "${var.service_name}-migrate"
}

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = var.runtime_account_id
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

# The schema migration runs inside the apply, before any new revision: Terraform executes the
# job when it is created or its run_execution_token changes, and waits for the execution to
# succeed ("The Job will become ready when the execution is successfully completed. The sum of
# job name and token length must be fewer than 63 characters." -
# https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs). The token is a
# hash of the image, so a first deploy and every upgrade migrate first; the service below
# depends on the job, so a failed migration stops the apply while old revisions keep serving.
resource "google_cloud_run_v2_job" "migrate" {
  project  = var.project_id
  name     = local.job_name
  location = var.region
  # The job holds no data: protecting it would only stop `deployer destroy` (keep-data).
  deletion_protection = false
  run_execution_token = local.migration_token
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
        connector = local.vpc_access.connector
        egress    = local.vpc_access.egress
        dynamic "network_interfaces" {
          for_each = local.vpc_access.interfaces
          content {
            network    = network_interfaces.value.network
            subnetwork = network_interfaces.value.subnetwork
          }
        }
      }

      volumes {
        name = local.container.volume.name
        cloud_sql_instance {
          instances = local.container.volume.instances
        }
      }

      containers {
        image = local.container.image
        args  = ["migrate"]

        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }

        dynamic "env" {
          for_each = local.container.env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.container.secrets
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }

        volume_mounts {
          name       = local.container.volume.name
          mount_path = local.container.volume.mount_path
        }
      }
    }
  }

  # The apply waits on the execution, and the provider's default is 20 minutes for create and
  # update: exactly the job's worst case (a 600 s task, retried once), with no room for the
  # instance to start or the database to wake. Never `gcloud run jobs execute` this job by hand:
  # an execution outside Terraform drops the token from the API's view, and every later plan
  # shows a diff (hashicorp/terraform-provider-google#24451).
  timeouts {
    create = "30m"
    update = "30m"
  }

  depends_on = [
    google_project_iam_member.cloudsql_client,
    google_secret_manager_secret_iam_member.db_password,
    google_storage_bucket_iam_member.artifacts,
  ]
}

resource "google_cloud_run_v2_service" "mlflow" {
  project     = var.project_id
  name        = var.service_name
  location    = var.region
  ingress     = "INGRESS_TRAFFIC_ALL"
  iap_enabled = true
  # The service holds no data (the database and bucket do, with their own protection), so a
  # keep-data `deployer destroy` may always delete it.
  deletion_protection = false
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
      connector = local.vpc_access.connector
      egress    = local.vpc_access.egress
      dynamic "network_interfaces" {
        for_each = local.vpc_access.interfaces
        content {
          network    = network_interfaces.value.network
          subnetwork = network_interfaces.value.subnetwork
        }
      }
    }

    volumes {
      name = local.container.volume.name
      cloud_sql_instance {
        instances = local.container.volume.instances
      }
    }

    containers {
      image = local.container.image

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
        for_each = local.container.env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.container.secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      volume_mounts {
        name       = local.container.volume.name
        mount_path = local.container.volume.mount_path
      }

      # Up to 3 minutes to start: with Direct VPC egress "you might experience connection
      # establishment delays of a minute or more on instance startup"; Google recommends a
      # startup probe with a matching budget (https://cloud.google.com/run/docs/configuring/vpc-direct-vpc#limitations).
      startup_probe {
        period_seconds    = 5
        timeout_seconds   = 4
        failure_threshold = 36
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
    # No revision before the schema it needs.
    google_cloud_run_v2_job.migrate,
  ]
}

# IAP calls the service as its own service agent (`deployer deploy` creates the agent first:
# it is made lazily, so a fresh project has none yet).
resource "google_cloud_run_v2_service_iam_member" "iap_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.mlflow.name
  role     = "roles/run.invoker"
  member   = local.iap_service_agent
}

# Programmatic access for people, not only service accounts. IAP's Google-managed OAuth client
# accepts a person's ID token from a program only when it was issued to an OAuth client
# allowlisted here (https://cloud.google.com/iap/docs/authentication-howto, "Authenticating from
# a desktop app"; IapSettings.accessSettings.oauthSettings.programmaticClients). The clients are
# created once in the console: the OAuth admin API that created them was shut down in 2026.
resource "google_iap_settings" "programmatic_clients" {
  count = length(var.iap_programmatic_clients) > 0 ? 1 : 0
  # The IAP resource of a Cloud Run service (with an underscore: `cloud_run-REGION`).
  name = "projects/${var.project_number}/iap_web/cloud_run-${var.region}/services/${google_cloud_run_v2_service.mlflow.name}"

  access_settings {
    oauth_settings {
      programmatic_clients = var.iap_programmatic_clients
    }
  }
}
