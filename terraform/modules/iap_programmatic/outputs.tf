output "programmatic_clients" {
  description = "The OAuth client IDs researchers pass to `deployer login` (MLFLOW_IAP_OAUTH_CLIENT_ID)."
  value       = var.programmatic_clients
}
