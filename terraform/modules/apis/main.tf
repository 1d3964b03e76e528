locals {
  services = toset(concat([
    "run.googleapis.com",
    "sqladmin.googleapis.com",
    "servicenetworking.googleapis.com",
    "vpcaccess.googleapis.com",
    "secretmanager.googleapis.com",
    "artifactregistry.googleapis.com",
    "iap.googleapis.com",
    "iamcredentials.googleapis.com",
    "cloudbuild.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "sts.googleapis.com",
    # Terraform reads the project (data.google_project) and IAM through Resource Manager.
    "cloudresourcemanager.googleapis.com",
    "storage.googleapis.com",
    # The sleeping database's schedule (modules/sleep); enabling an API costs nothing.
    "cloudscheduler.googleapis.com",
  ], var.extra_services))
}

resource "google_project_service" "this" {
  for_each = local.services

  project = var.project_id
  service = each.value
  # Turning an API off on destroy would break anything else in the project that uses it.
  disable_on_destroy = false
}
