mock_provider "google" {
  source = "./tests"
}

mock_provider "random" {}

variables {
  project_id         = "acme-ml"
  region             = "europe-west1"
  name_prefix        = "mlflow"
  network_id         = "projects/acme-ml/global/networks/mlflow-network"
  password_secret_id = "mlflow-db-password"
  labels             = { app = "mlflow" }
}

run "postgres_16_on_the_small_tier_uses_the_enterprise_edition" {
  command = apply
  module {
    source = "./modules/database"
  }
  assert {
    condition     = google_sql_database_instance.this.database_version == "POSTGRES_16"
    error_message = "PostgreSQL 16 is the default"
  }
  assert {
    condition     = google_sql_database_instance.this.settings[0].edition == "ENTERPRISE" && output.edition == "ENTERPRISE"
    error_message = "db-f1-micro needs the ENTERPRISE edition (PG16 defaults to ENTERPRISE_PLUS)"
  }
  assert {
    condition     = google_sql_database_instance.this.settings[0].ip_configuration[0].ipv4_enabled == false
    error_message = "the database must have no public IP"
  }
  assert {
    condition     = google_sql_database_instance.this.settings[0].ip_configuration[0].ssl_mode == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    error_message = "TLS must be required"
  }
  assert {
    condition     = google_sql_database_instance.this.settings[0].ip_configuration[0].server_ca_mode == "GOOGLE_MANAGED_INTERNAL_CA"
    error_message = "Cloud Run's Cloud SQL connection needs the per-instance CA (connect-run: server CA mode)"
  }
  assert {
    condition = (
      google_sql_database_instance.this.settings[0].backup_configuration[0].enabled &&
      google_sql_database_instance.this.settings[0].backup_configuration[0].point_in_time_recovery_enabled
    )
    error_message = "backups and point-in-time recovery must be on"
  }
  assert {
    condition     = google_sql_database_instance.this.deletion_protection && google_sql_database_instance.this.settings[0].deletion_protection_enabled
    error_message = "deletion protection must be on by default, in Terraform and in the API"
  }
  assert {
    condition = alltrue([for f in ["log_connections", "log_disconnections", "log_checkpoints", "log_lock_waits", "log_hostname", "cloudsql.enable_pgaudit"] :
    contains([for d in google_sql_database_instance.this.settings[0].database_flags : d.name if d.value == "on"], f)])
    error_message = "PostgreSQL audit logging flags must be on"
  }
  assert {
    condition     = output.engine == "postgresql"
    error_message = "the default engine is PostgreSQL"
  }
  assert {
    condition     = alltrue([for c in split("", "@:/?#%&") : strcontains(random_password.db.override_special, c)])
    error_message = "the generated password may hold URI-breaking characters (the server escapes them)"
  }
  assert {
    condition     = google_sql_user.mlflow.password_wo_version == 1 && google_secret_manager_secret_version.db_password.secret_data_wo_version == "1"
    error_message = "the password goes to the user and to Secret Manager through write-only arguments"
  }
  assert {
    condition     = google_sql_database_instance.this.settings[0].connector_enforcement == "REQUIRED"
    error_message = "only the Cloud SQL connectors (Cloud Run's /cloudsql socket) may connect"
  }
  assert {
    condition     = google_sql_user.mlflow.deletion_policy == "ABANDON"
    error_message = "the user owns MLflow's tables and cannot be dropped: it goes with the instance"
  }
  assert {
    condition     = google_secret_manager_secret.db_password.secret_id == "mlflow-db-password"
    error_message = "the secret id is the one the root derives"
  }
}

run "mysql_8_4_is_selectable" {
  command = apply
  module {
    source = "./modules/database"
  }
  variables {
    engine = "mysql"
    tier   = "db-g1-small"
  }
  assert {
    condition     = google_sql_database_instance.this.database_version == "MYSQL_8_4" && output.engine == "mysql"
    error_message = "MySQL 8.4 expected (8.0 is in paid extended support since 2026-07-01)"
  }
  assert {
    condition     = google_sql_database_instance.this.settings[0].backup_configuration[0].binary_log_enabled
    error_message = "MySQL point-in-time recovery needs binary logs"
  }
}

run "performance_tiers_use_enterprise_plus" {
  command = apply
  module {
    source = "./modules/database"
  }
  variables {
    tier = "db-perf-optimized-N-2"
  }
  assert {
    condition     = google_sql_database_instance.this.settings[0].edition == "ENTERPRISE_PLUS"
    error_message = "db-perf-optimized tiers need ENTERPRISE_PLUS"
  }
}

run "unknown_tiers_are_refused" {
  command = plan
  module {
    source = "./modules/database"
  }
  variables {
    tier = "db-n1-standard-1"
  }
  expect_failures = [var.tier]
}

run "unknown_engines_are_refused" {
  command = plan
  module {
    source = "./modules/database"
  }
  variables {
    engine = "oracle"
  }
  expect_failures = [var.engine]
}
