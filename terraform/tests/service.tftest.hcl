mock_provider "google" {
  source = "./tests"
}

variables {
  project_id         = "acme-ml"
  project_number     = "123456789012"
  region             = "europe-west1"
  service_name       = "mlflow"
  runtime_account_id = "mlflow-server"
  image              = "europe-west1-docker.pkg.dev/acme-ml/mlflow/mlflow-server:3f2a9c1d"
  bucket_name        = "acme-ml-mlflow-artifacts"
  vpc_egress         = "connector"
  connector_id       = "projects/acme-ml/locations/europe-west1/connectors/mlflow-conn"
  database = {
    engine                  = "postgresql"
    connection_name         = "acme-ml:europe-west1:mlflow-db-a1b2c3"
    database_name           = "mlflow"
    user_name               = "mlflow"
    password_secret_id      = "mlflow-db-password"
    password_secret_version = "projects/acme-ml/secrets/mlflow-db-password/versions/1"
    max_connections         = 25
  }
}

run "iap_is_on_and_the_server_scales_to_zero" {
  command = apply
  module {
    source = "./modules/service"
  }
  assert {
    condition     = google_cloud_run_v2_service.mlflow.iap_enabled
    error_message = "IAP must be enabled on the service"
  }
  assert {
    condition     = google_cloud_run_v2_service.mlflow.template[0].scaling[0].min_instance_count == 0
    error_message = "the service scales to zero by default"
  }
  assert {
    condition = (
      google_cloud_run_v2_service.mlflow.template[0].containers[0].resources[0].cpu_idle &&
      google_cloud_run_v2_service.mlflow.template[0].containers[0].resources[0].startup_cpu_boost
    )
    error_message = "request-based billing (cpu_idle) and startup CPU boost are expected"
  }
  assert {
    condition = (
      google_cloud_run_v2_service.mlflow.template[0].containers[0].startup_probe[0].http_get[0].path == "/health" &&
      google_cloud_run_v2_service.mlflow.template[0].containers[0].liveness_probe[0].http_get[0].path == "/health"
    )
    error_message = "startup and liveness probes on /health"
  }
  assert {
    condition     = google_cloud_run_v2_service.mlflow.template[0].volumes[0].cloud_sql_instance[0].instances == toset(["acme-ml:europe-west1:mlflow-db-a1b2c3"])
    error_message = "the Cloud SQL socket volume mounts this database"
  }
  assert {
    condition     = google_cloud_run_v2_service.mlflow.template[0].vpc_access[0].connector == var.connector_id
    error_message = "connector egress uses the connector"
  }
  assert {
    condition     = google_cloud_run_v2_service_iam_member.iap_invoker.member == "serviceAccount:service-123456789012@gcp-sa-iap.iam.gserviceaccount.com" && google_cloud_run_v2_service_iam_member.iap_invoker.role == "roles/run.invoker"
    error_message = "the IAP service agent must be the invoker"
  }
  assert {
    condition     = output.service_url == "https://mlflow-123456789012.europe-west1.run.app"
    error_message = "the URL is Cloud Run's deterministic one, stable across redeploys"
  }
  assert {
    condition     = output.iap_audience == "/projects/123456789012/locations/europe-west1/services/mlflow"
    error_message = "the server verifies IAP's audience for this service"
  }
  assert {
    condition = (
      output.env.AUTH_MODE == "iap" && output.env.DB_ENGINE == "postgresql" &&
      output.env.ARTIFACTS_DESTINATION == "gs://acme-ml-mlflow-artifacts/artifacts" &&
      output.env.ALLOWED_HOSTS == "mlflow-123456789012.europe-west1.run.app,mlflow-*.a.run.app"
    )
    error_message = "the server's settings follow the stack"
  }
  assert {
    condition     = google_cloud_run_v2_job.migrate.template[0].template[0].containers[0].args == tolist(["migrate"]) && google_cloud_run_v2_job.migrate.template[0].template[0].containers[0].image == var.image
    error_message = "the migration job runs the same image with `migrate`"
  }
}

run "the_migration_runs_in_the_apply_for_every_new_image" {
  command = apply
  module {
    source = "./modules/service"
  }
  assert {
    condition     = google_cloud_run_v2_job.migrate.run_execution_token == substr(sha256(var.image), 0, 8)
    error_message = "Terraform executes the job (and waits for it) with a token derived from the image"
  }
  assert {
    condition     = length(google_cloud_run_v2_job.migrate.name) + length(google_cloud_run_v2_job.migrate.run_execution_token) < 63
    error_message = "Cloud Run: job name plus token must be under 63 characters"
  }
  assert {
    condition     = !google_cloud_run_v2_service.mlflow.deletion_protection && !google_cloud_run_v2_job.migrate.deletion_protection
    error_message = "the service and job hold no data: a keep-data destroy must be able to delete them"
  }
}

run "a_new_image_migrates_again" {
  command = apply
  module {
    source = "./modules/service"
  }
  variables {
    image = "europe-west1-docker.pkg.dev/acme-ml/mlflow/mlflow-server:77aa00bb"
  }
  assert {
    condition     = google_cloud_run_v2_job.migrate.run_execution_token != run.the_migration_runs_in_the_apply_for_every_new_image.migration_execution_token
    error_message = "an upgrade must execute the migration again"
  }
}

run "service_and_job_share_one_container_spec" {
  command = apply
  module {
    source = "./modules/service"
  }
  variables {
    vpc_egress     = "direct"
    connector_id   = null
    network_name   = "mlflow-network"
    subnetwork     = "mlflow-serverless"
    web_app_admins = ["user:alice@example.com", "serviceAccount:ci@acme-ml.iam.gserviceaccount.com"]
  }
  assert {
    condition = (
      jsonencode([for e in google_cloud_run_v2_job.migrate.template[0].template[0].containers[0].env : [e.name, e.value, [for s in e.value_source : s.secret_key_ref[0].secret]]]) ==
      jsonencode([for e in google_cloud_run_v2_service.mlflow.template[0].containers[0].env : [e.name, e.value, [for s in e.value_source : s.secret_key_ref[0].secret]]]) &&
      jsonencode([for m in google_cloud_run_v2_job.migrate.template[0].template[0].containers[0].volume_mounts : [m.name, m.mount_path]]) ==
      jsonencode([for m in google_cloud_run_v2_service.mlflow.template[0].containers[0].volume_mounts : [m.name, m.mount_path]]) &&
      jsonencode([for v in google_cloud_run_v2_job.migrate.template[0].template[0].volumes : [v.name, v.cloud_sql_instance[0].instances]]) ==
      jsonencode([for v in google_cloud_run_v2_service.mlflow.template[0].volumes : [v.name, v.cloud_sql_instance[0].instances]]) &&
      jsonencode([for a in google_cloud_run_v2_job.migrate.template[0].template[0].vpc_access : [a.connector, a.egress, [for n in a.network_interfaces : [n.network, n.subnetwork]]]]) ==
      jsonencode([for a in google_cloud_run_v2_service.mlflow.template[0].vpc_access : [a.connector, a.egress, [for n in a.network_interfaces : [n.network, n.subnetwork]]]]) &&
      google_cloud_run_v2_job.migrate.template[0].template[0].containers[0].image == google_cloud_run_v2_service.mlflow.template[0].containers[0].image
    )
    error_message = "the migration job must see exactly the service's settings, secret, socket and network"
  }
  assert {
    condition     = length([for e in google_cloud_run_v2_service.mlflow.template[0].containers[0].env : e if e.name == "DB_PASSWORD" && e.value_source[0].secret_key_ref[0].secret == "mlflow-db-password"]) == 1
    error_message = "the password comes from Secret Manager"
  }
  assert {
    condition     = output.env.ADMIN_EMAILS == "alice@example.com,ci@acme-ml.iam.gserviceaccount.com"
    error_message = "the server gets the admins' bare emails"
  }
  assert {
    condition     = google_cloud_run_v2_service.mlflow.template[0].containers[0].startup_probe[0].period_seconds * google_cloud_run_v2_service.mlflow.template[0].containers[0].startup_probe[0].failure_threshold >= 120
    error_message = "Direct VPC egress can take a minute or more to connect: the startup probe must allow for it"
  }
}

run "admins_need_a_kind_prefix" {
  command = plan
  module {
    source = "./modules/service"
  }
  variables {
    web_app_admins = ["alice@example.com"]
  }
  expect_failures = [var.web_app_admins]
}

run "people_reach_the_service_from_code_only_through_an_allowlisted_client" {
  command = apply
  module {
    source = "./modules/service"
  }
  variables {
    iap_programmatic_clients = ["1234-desktop.apps.googleusercontent.com"]
  }
  assert {
    condition     = google_iap_settings.programmatic_clients[0].name == "projects/123456789012/iap_web/cloud_run-europe-west1/services/mlflow"
    error_message = "the IAP settings must be those of the Cloud Run service"
  }
  assert {
    condition     = tolist(google_iap_settings.programmatic_clients[0].access_settings[0].oauth_settings[0].programmatic_clients) == tolist(["1234-desktop.apps.googleusercontent.com"])
    error_message = "the desktop client must be allowlisted for programmatic access"
  }
}

run "no_programmatic_clients_leaves_iap_settings_alone" {
  command = plan
  module {
    source = "./modules/service"
  }
  assert {
    condition     = length(google_iap_settings.programmatic_clients) == 0
    error_message = "without programmatic clients no IAP settings are managed"
  }
}

run "programmatic_clients_must_be_oauth_client_ids" {
  command = plan
  module {
    source = "./modules/service"
  }
  variables {
    iap_programmatic_clients = ["alice@example.com"]
  }
  expect_failures = [var.iap_programmatic_clients]
}

run "the_runtime_account_gets_exactly_what_it_needs" {
  command = apply
  module {
    source = "./modules/service"
  }
  assert {
    condition     = google_project_iam_member.cloudsql_client.role == "roles/cloudsql.client"
    error_message = "Cloud SQL client is the one project-level role"
  }
  assert {
    condition     = google_storage_bucket_iam_member.artifacts.bucket == "acme-ml-mlflow-artifacts" && google_storage_bucket_iam_member.artifacts.role == "roles/storage.objectAdmin"
    error_message = "object admin on this bucket only"
  }
  assert {
    condition     = google_secret_manager_secret_iam_member.db_password.secret_id == "mlflow-db-password" && google_secret_manager_secret_iam_member.db_password.role == "roles/secretmanager.secretAccessor"
    error_message = "secret accessor on its own secret only"
  }
  assert {
    condition     = google_service_account_iam_member.self_signing.service_account_id == google_service_account.runtime.name && google_service_account_iam_member.self_signing.role == "roles/iam.serviceAccountTokenCreator"
    error_message = "token creator on itself only (to sign GCS URLs)"
  }
  assert {
    condition = alltrue([for m in [
      google_project_iam_member.cloudsql_client.member, google_storage_bucket_iam_member.artifacts.member,
      google_secret_manager_secret_iam_member.db_password.member, google_service_account_iam_member.self_signing.member
    ] : m == "serviceAccount:${google_service_account.runtime.email}"])
    error_message = "every grant goes to the runtime account"
  }
}

run "direct_egress_joins_the_subnetwork" {
  command = apply
  module {
    source = "./modules/service"
  }
  variables {
    vpc_egress   = "direct"
    connector_id = null
    network_name = "mlflow-network"
    subnetwork   = "mlflow-serverless"
  }
  assert {
    condition     = google_cloud_run_v2_service.mlflow.template[0].vpc_access[0].connector == null && google_cloud_run_v2_service.mlflow.template[0].vpc_access[0].network_interfaces[0].subnetwork == "mlflow-serverless"
    error_message = "direct egress uses network interfaces, not a connector"
  }
}

run "mysql_settings_reach_the_server" {
  command = apply
  module {
    source = "./modules/service"
  }
  variables {
    database = {
      engine                  = "mysql"
      connection_name         = "acme-ml:europe-west1:mlflow-db-a1b2c3"
      database_name           = "mlflow"
      user_name               = "mlflow"
      password_secret_id      = "mlflow-db-password"
      password_secret_version = "projects/acme-ml/secrets/mlflow-db-password/versions/1"
      max_connections         = 50
    }
  }
  assert {
    condition     = output.env.DB_ENGINE == "mysql" && output.env.DB_MAX_CONNECTIONS == "50" && output.env.ADMIN_EMAILS == ""
    error_message = "the server builds a MySQL unix-socket URI from DB_ENGINE=mysql"
  }
}

run "an_image_without_tag_or_digest_is_refused" {
  command = plan
  module {
    source = "./modules/service"
  }
  variables {
    image = "mlflow-server"
  }
  expect_failures = [var.image]
}
