# Values the mock provider returns where a random string would not do.
mock_data "google_project" {
  defaults = {
    number = "123456789012"
  }
}

mock_data "google_compute_network" {
  defaults = {
    id   = "projects/acme-ml/global/networks/shared-vpc"
    name = "shared-vpc"
  }
}

mock_resource "google_sql_database_instance" {
  defaults = {
    connection_name = "acme-ml:europe-west1:mlflow-db-a1b2c3"
  }
}

mock_resource "google_service_account" {
  defaults = {
    email = "mlflow-server@acme-ml.iam.gserviceaccount.com"
    name  = "projects/acme-ml/serviceAccounts/mlflow-server@acme-ml.iam.gserviceaccount.com"
  }
}

mock_resource "google_compute_network" {
  defaults = {
    id = "projects/acme-ml/global/networks/mlflow-network"
  }
}
