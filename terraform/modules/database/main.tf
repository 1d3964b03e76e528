locals {
  postgres = var.engine == "postgresql"
  # PostgreSQL 16 defaults to ENTERPRISE_PLUS, which rejects the small shared-core tiers.
  edition = startswith(var.tier, "db-perf-optimized-") ? "ENTERPRISE_PLUS" : "ENTERPRISE"
  user    = "mlflow"
  # Bumped by hand to rotate the password (with a new random_password keeper).
  password_version = 1
  database         = "mlflow"
  # Audit-friendly logging on PostgreSQL; on MySQL, no local files and no database listing.
  postgres_flags = tomap({
    log_checkpoints            = "on"
    log_connections            = "on"
    log_disconnections         = "on"
    log_hostname               = "on"
    log_lock_waits             = "on"
    log_min_messages           = "error"
    log_min_error_statement    = "error"
    log_min_duration_statement = "-1"
    log_statement              = "ddl"
    log_temp_files             = "0"
    "cloudsql.enable_pgaudit"  = "on"
  })
  mysql_flags    = tomap({ local_infile = "off", skip_show_database = "on" })
  database_flags = local.postgres ? local.postgres_flags : local.mysql_flags
}

resource "random_id" "instance_suffix" {
  byte_length = 3
}

# Any character may appear: the server builds its URI with proper escaping.
resource "random_password" "db" {
  length           = 32
  special          = true
  override_special = "@:/?#%&!-_=+"
}

# trivy:ignore:AVD-GCP-0014 PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
# trivy:ignore:AVD-GCP-0016 PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
# trivy:ignore:AVD-GCP-0020 PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
# trivy:ignore:AVD-GCP-0022 PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
# trivy:ignore:AVD-GCP-0025 PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
resource "google_sql_database_instance" "this" {
  #checkov:skip=CKV_GCP_51:PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
  #checkov:skip=CKV_GCP_52:PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
  #checkov:skip=CKV_GCP_53:PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
  #checkov:skip=CKV_GCP_54:PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
  #checkov:skip=CKV_GCP_108:PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
  #checkov:skip=CKV_GCP_109:PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
  #checkov:skip=CKV_GCP_110:PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
  #checkov:skip=CKV_GCP_111:PostgreSQL's audit logging flags are set through the per-engine dynamic block above (local.postgres_flags), which the scanner cannot evaluate; tests/terraform/database.tftest.hcl asserts them
  project = var.project_id
  # Names of deleted instances stay reserved for a week: a suffix lets a re-create proceed.
  name   = "${var.name_prefix}-db-${random_id.instance_suffix.hex}"
  region = var.region
  # MySQL 8.0 is in paid extended support since 2026-07-01: new instances run 8.4.
  database_version    = local.postgres ? "POSTGRES_16" : "MYSQL_8_4"
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.tier
    edition                     = local.edition
    availability_type           = "ZONAL"
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels
    # Only the Cloud SQL connectors (Cloud Run's /cloudsql socket is the Auth Proxy) may connect.
    connector_enforcement = "REQUIRED"

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = var.network_id
      allocated_ip_range                            = var.allocated_ip_range
      ssl_mode                                      = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
      enable_private_path_for_google_cloud_services = true
      # "You must select the per-instance CA option (GOOGLE_MANAGED_INTERNAL_CA) as the server CA
      # mode for instances that you want to connect to from web applications"
      # (https://cloud.google.com/sql/docs/postgres/connect-run, "Set up a Cloud SQL instance").
      server_ca_mode = "GOOGLE_MANAGED_INTERNAL_CA"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "03:00"
      point_in_time_recovery_enabled = local.postgres ? true : null
      binary_log_enabled             = local.postgres ? null : true
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = 7
      }
    }

    dynamic "database_flags" {
      for_each = local.database_flags
      content {
        name  = database_flags.key
        value = database_flags.value
      }
    }

    maintenance_window {
      day  = 7
      hour = 4
    }
  }

  lifecycle {
    # The sleeping database (modules/sleep, deployer/server/wake.py) stops and starts the
    # instance through the Admin API: an apply must not undo either.
    ignore_changes = [settings[0].activation_policy]
  }
}

resource "google_sql_database" "mlflow" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = local.database
}

# The password is written through write-only arguments (password_wo, secret_data_wo), so the
# user and the secret version keep no copy in Terraform's state; random_password still does (one
# copy instead of three). An ephemeral random_password would keep none, but the provider schemas
# this repository validates against offline (tests/terraform/schema, extracted from the cdktn
# wheels) carry no ephemeral resources and no write-only flags, so that form could not be
# checked here; see the README ("The database password").
# The *_wo_version arguments change only when the password does: bump them to rotate.
resource "google_sql_user" "mlflow" {
  project             = var.project_id
  instance            = google_sql_database_instance.this.name
  name                = local.user
  password_wo         = random_password.db.result
  password_wo_version = local.password_version
  # The user owns MLflow's tables, and PostgreSQL refuses to drop a role that owns objects
  # ("role ... cannot be dropped"): leave it to go with the instance on `destroy --delete-data`.
  deletion_policy = "ABANDON"
}

# Cloud Run injects the password as DB_PASSWORD from here.
resource "google_secret_manager_secret" "db_password" {
  project   = var.project_id
  secret_id = var.password_secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "db_password" {
  secret                 = google_secret_manager_secret.db_password.id
  secret_data_wo         = random_password.db.result
  secret_data_wo_version = tostring(local.password_version)

  lifecycle {
    # A new user (a new instance) gets the same password sent again: keep the secret in step.
    replace_triggered_by = [google_sql_user.mlflow]
  }
}
