provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

locals {
  labels      = merge(var.labels, { app = "mlflow", managed-by = "terraform" })
  bucket_name = var.artifacts_bucket_name != "" ? var.artifacts_bucket_name : "${var.project_id}-${var.service_name}-artifacts"
}

data "google_project" "this" {
  project_id = var.project_id
}

module "services" {
  source     = "./modules/services"
  project_id = var.project_id
}

module "network" {
  source          = "./modules/network"
  project_id      = var.project_id
  region          = var.region
  name_prefix     = var.service_name
  network_name    = var.network_name
  subnetwork_name = var.subnetwork_name
  subnetwork_cidr = var.subnetwork_cidr
  vpc_egress      = var.vpc_egress
  connector_cidr  = var.connector_cidr
  depends_on      = [module.services]
}

module "database" {
  source              = "./modules/database"
  project_id          = var.project_id
  region              = var.region
  name_prefix         = var.service_name
  engine              = var.db_engine
  tier                = var.db_tier
  network_id          = module.network.network_id
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
  depends_on    = [module.services]
}

module "registry" {
  source     = "./modules/registry"
  project_id = var.project_id
  region     = var.region
  labels     = local.labels
  depends_on = [module.services]
}

module "service" {
  source         = "./modules/service"
  project_id     = var.project_id
  project_number = data.google_project.this.number
  region         = var.region
  service_name   = var.service_name
  image          = var.image
  database = {
    engine             = module.database.engine
    connection_name    = module.database.connection_name
    database_name      = module.database.database_name
    user_name          = module.database.user_name
    password_secret_id = module.database.password_secret_id
    max_connections    = module.database.max_connections
  }
  bucket_name          = module.artifacts.name
  vpc_egress           = var.vpc_egress
  connector_id         = module.network.connector_id
  network_name         = module.network.network_name
  subnetwork           = module.network.subnetwork
  min_instances        = var.min_instances
  max_instances        = var.max_instances
  workers              = var.server_workers
  threads              = var.server_threads
  reserved_connections = var.db_reserved_connections
  cpu                  = var.cpu
  memory               = var.memory
  custom_domain        = var.custom_domain
  deletion_protection  = var.deletion_protection
  labels               = local.labels
  depends_on           = [module.services]
}

module "access" {
  source            = "./modules/access"
  project_id        = var.project_id
  region            = var.region
  service_name      = module.service.service_name
  web_app_users     = var.web_app_users
  github_repository = var.github_repository
}
