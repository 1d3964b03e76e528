provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

locals {
  labels = merge(var.labels, { app = "mlflow", managed-by = "terraform" })

  # Google Cloud's limits, kept once for the deployer and Terraform (deployer/limits.json):
  # Cloud SQL's default max_connections for the tier, sizing the server's connection pools.
  limits             = jsondecode(file("${path.module}/../deployer/limits.json"))
  db_max_connections = lookup(local.limits.db_tier_max_connections, var.db_tier, local.limits.db_default_max_connections)

  # One deployment's name: SERVICE_NAME in the default environment, SERVICE_NAME-ENVIRONMENT in
  # any other, so two environments can share a project. Everything is named after it. The
  # deployer derives the registry repository the same way (deployer/image_build.py
  # repository_id; tests/test_terraform.py checks the two agree).
  name = var.environment == "default" ? var.service_name : "${var.service_name}-${var.environment}"
  # Ids with tight length limits get a cut name; a hash of the whole name keeps them distinct.
  name_19 = length(local.name) <= 19 ? local.name : "${substr(local.name, 0, 14)}-${substr(sha1(local.name), 0, 4)}"
  name_23 = length(local.name) <= 23 ? local.name : "${substr(local.name, 0, 18)}-${substr(sha1(local.name), 0, 4)}"
  ids = {
    runtime_account = "${local.name_23}-server"     # service account ids: 6-30 characters
    client_account  = "${local.name_19}-log-pusher" # (the client account keeps its old name)
    pool_prefix     = "${local.name_23}-gh"         # pool ids: 4-32 with the random suffix
    connector       = "${local.name_19}-conn"       # connector names: at most 25
    repository      = local.name
    secret          = "${local.name}-db-password"
    sleeper_account = "${local.name_19}-sleeper"
  }
  # The server touches this object (in the artifacts bucket, outside MLflow's artifacts/ root)
  # with the time of its last request; the sleeper job reads it.
  last_request_object = "_deployer/last-request"
  # Bucket names are global and at most 63 characters.
  bucket_name = var.artifacts_bucket_name != "" ? var.artifacts_bucket_name : "${var.project_id}-${local.name_19}-artifacts"
}

data "google_project" "this" {
  project_id = var.project_id
  depends_on = [module.apis]
}

module "apis" {
  source     = "./modules/apis"
  project_id = var.project_id
}

module "network" {
  source                        = "./modules/network"
  project_id                    = var.project_id
  region                        = var.region
  name_prefix                   = local.name
  network_name                  = var.network_name
  subnetwork_name               = var.subnetwork_name
  subnetwork_cidr               = var.subnetwork_cidr
  vpc_egress                    = var.vpc_egress
  connector_cidr                = var.connector_cidr
  connector_name                = local.ids.connector
  private_services_cidr         = var.private_services_cidr
  reuse_private_services_access = var.reuse_private_services_access
  depends_on                    = [module.apis]
}

module "database" {
  source              = "./modules/database"
  project_id          = var.project_id
  region              = var.region
  name_prefix         = local.name
  engine              = var.db_engine
  tier                = var.db_tier
  network_id          = module.network.network_id
  allocated_ip_range  = module.network.private_services_range
  password_secret_id  = local.ids.secret
  deletion_protection = var.deletion_protection
  labels              = local.labels
  # The instance needs the private services connection before it can take a private IP.
  depends_on = [module.network]
}

module "artifacts" {
  source        = "./modules/artifacts"
  project_id    = var.project_id
  location      = var.region
  bucket_name   = local.bucket_name
  force_destroy = var.artifacts_force_destroy
  labels        = local.labels
  depends_on    = [module.apis]
}

module "registry" {
  source        = "./modules/registry"
  project_id    = var.project_id
  region        = var.region
  repository_id = local.ids.repository
  labels        = local.labels
  depends_on    = [module.apis]
}

module "service" {
  source             = "./modules/service"
  project_id         = var.project_id
  project_number     = data.google_project.this.number
  region             = var.region
  service_name       = local.name
  runtime_account_id = local.ids.runtime_account
  image              = var.image
  database = {
    engine                  = module.database.engine
    connection_name         = module.database.connection_name
    database_name           = module.database.database_name
    user_name               = module.database.user_name
    password_secret_id      = module.database.password_secret_id
    password_secret_version = module.database.password_secret_version
    max_connections         = local.db_max_connections
  }
  bucket_name              = module.artifacts.name
  vpc_egress               = var.vpc_egress
  connector_id             = module.network.connector_id
  network_name             = module.network.network_name
  subnetwork               = module.network.subnetwork
  min_instances            = var.min_instances
  max_instances            = var.max_instances
  workers                  = var.server_workers
  threads                  = var.server_threads
  reserved_connections     = var.db_reserved_connections
  cpu                      = var.cpu
  memory                   = var.memory
  custom_domain            = var.custom_domain
  web_app_admins           = var.web_app_admins
  iap_programmatic_clients = var.iap_programmatic_clients
  db_sleep_after_minutes   = var.db_sleep_after_minutes
  last_request_object      = local.last_request_object
  labels                   = local.labels
  depends_on               = [module.apis]
}

# The database that sleeps: only when db_sleep_after_minutes is not 0.
module "sleep" {
  source                  = "./modules/sleep"
  count                   = var.db_sleep_after_minutes > 0 ? 1 : 0
  project_id              = var.project_id
  region                  = var.region
  name_prefix             = local.name
  sleeper_account_id      = local.ids.sleeper_account
  instance_name           = module.database.instance_name
  connection_name         = module.database.connection_name
  sleep_after_minutes     = var.db_sleep_after_minutes
  image                   = var.image
  bucket_name             = module.artifacts.name
  last_request_object     = local.last_request_object
  runtime_service_account = module.service.runtime_service_account
  labels                  = local.labels
  depends_on              = [module.apis]
}

module "access" {
  source                     = "./modules/access"
  project_id                 = var.project_id
  region                     = var.region
  service_name               = module.service.service_name
  web_app_users              = var.web_app_users
  client_account_id          = local.ids.client_account
  pool_id_prefix             = local.ids.pool_prefix
  github_repository          = var.github_repository
  github_repository_id       = var.github_repository_id
  github_repository_owner_id = var.github_repository_owner_id
  depends_on                 = [module.apis]
}
