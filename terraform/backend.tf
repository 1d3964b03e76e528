# State lives in GCS; `deployer apply` passes the bucket and prefix (one per environment):
#   terraform init -backend-config=bucket=STATE_BUCKET -backend-config=prefix=mlflow/ENV
terraform {
  backend "gcs" {}
}
