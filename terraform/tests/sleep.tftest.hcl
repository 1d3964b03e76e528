mock_provider "google" {
  source = "./tests"
}

mock_provider "random" {
  mock_resource "random_id" {
    defaults = { hex = "a1b2c3" }
  }
}

variables {
  project_id    = "acme-ml"
  region        = "europe-west1"
  image         = "europe-west1-docker.pkg.dev/acme-ml/mlflow/mlflow-server:3f2a9c1d"
  web_app_users = ["user:alice@example.com"]
}

run "the_database_sleeps_after_an_hour_by_default" {
  command = apply
  assert {
    condition     = output.sleeper_job_name == "mlflow-sleeper"
    error_message = "sleep is on by default: the sleeper job exists"
  }
  assert {
    condition     = module.service.env.DB_SLEEP_AFTER_MINUTES == "60" && module.service.env.LAST_REQUEST_OBJECT == "gs://acme-ml-mlflow-artifacts/_deployer/last-request"
    error_message = "the server is told the idle time and where to record its last request"
  }
  assert {
    condition     = module.sleep[0].schedule == "*/5 * * * *"
    error_message = "an hour's idle time is checked every 5 minutes"
  }
}

run "zero_means_never_no_job_no_role" {
  command = apply
  variables {
    db_sleep_after_minutes = 0
  }
  assert {
    condition     = output.sleeper_job_name == null && length(module.sleep) == 0
    error_message = "0 = never: nothing scheduled, no custom role"
  }
  assert {
    condition     = module.service.env.DB_SLEEP_AFTER_MINUTES == "0" && module.service.env.LAST_REQUEST_OBJECT == ""
    error_message = "the server neither records requests nor wakes anything"
  }
}

run "idle_times_under_a_quarter_hour_are_refused" {
  command = plan
  variables {
    db_sleep_after_minutes = 5
  }
  expect_failures = [var.db_sleep_after_minutes]
}

run "the_sleeper_holds_exactly_get_and_update_on_one_instance" {
  command = apply
  module {
    source = "./modules/sleep"
  }
  variables {
    name_prefix             = "mlflow-tracking-team-production-europe-01"
    sleeper_account_id      = "mlflow-tracking-t-1a2b-sleeper"
    instance_name           = "mlflow-db-a1b2c3"
    connection_name         = "acme-ml:europe-west1:mlflow-db-a1b2c3"
    sleep_after_minutes     = 240
    bucket_name             = "acme-ml-mlflow-artifacts"
    last_request_object     = "_deployer/last-request"
    runtime_service_account = "mlflow-server@acme-ml.iam.gserviceaccount.com"
  }
  assert {
    condition     = toset(google_project_iam_custom_role.sql_activation.permissions) == toset(["cloudsql.instances.get", "cloudsql.instances.update"])
    error_message = "the custom role grants reading and patching the instance, nothing else"
  }
  assert {
    condition     = length(google_project_iam_custom_role.sql_activation.role_id) <= 64 && can(regex("^[a-zA-Z0-9_.]{3,64}$", google_project_iam_custom_role.sql_activation.role_id))
    error_message = "custom role ids are 3-64 letters, digits, underscores or dots"
  }
  assert {
    condition = alltrue([
      for b in [google_project_iam_member.sleeper_sql, google_project_iam_member.runtime_sql] :
      b.condition[0].expression == "resource.name == \"projects/acme-ml/instances/mlflow-db-a1b2c3\""
    ])
    error_message = "both grants are limited to the one instance"
  }
  assert {
    condition     = google_cloud_run_v2_job.sleeper.template[0].template[0].containers[0].command == tolist(["python", "-m", "deployer.server.sleeper"])
    error_message = "the job runs the sleeper from the server image"
  }
  assert {
    condition     = google_cloud_scheduler_job.sleeper.http_target[0].uri == "https://run.googleapis.com/v2/projects/acme-ml/locations/europe-west1/jobs/mlflow-tracking-team-production-europe-01-sleeper:run" && google_cloud_scheduler_job.sleeper.schedule == "*/15 * * * *"
    error_message = "Cloud Scheduler runs the job through the Run Admin API; long idle times are checked every 15 minutes"
  }
  assert {
    condition     = google_cloud_scheduler_job.sleeper.http_target[0].oauth_token[0].service_account_email == google_service_account.sleeper.email
    error_message = "the schedule runs as the sleeper's own account"
  }
}
