locals {
  postgres = var.engine == "postgresql"
  # PostgreSQL 16 defaults to ENTERPRISE_PLUS, which rejects the small shared-core tiers.
  edition = startswith(var.tier, "db-perf-optimized-") ? "ENTERPRISE_PLUS" : "ENTERPRISE"
  # Cloud SQL's default max_connections for the tier (the lower of the two engines).
  max_connections = lookup({ "db-f1-micro" = 25, "db-g1-small" = 50 }, var.tier, 100)
  user            = "mlflow"
  database        = "mlflow"
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
  name                = "${var.name_prefix}-db-${random_id.instance_suffix.hex}"
  region              = var.region
  database_version    = local.postgres ? "POSTGRES_16" : "MYSQL_8_0"
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

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = var.network_id
      ssl_mode                                      = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
      enable_private_path_for_google_cloud_services = true
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
}

resource "google_sql_database" "mlflow" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = local.database
}

resource "google_sql_user" "mlflow" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = local.user
  password = random_password.db.result
}

# The password lives only here (and in Terraform state); Cloud Run injects it as DB_PASSWORD.
resource "google_secret_manager_secret" "db_password" {
  project   = var.project_id
  secret_id = "${var.name_prefix}-db-password"
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "db_password" {
  secret      = google_secret_manager_secret.db_password.id
  secret_data = random_password.db.result
}
