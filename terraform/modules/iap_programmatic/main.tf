# Programmatic access for people, not only service accounts. IAP's Google-managed OAuth client
# accepts a person's ID token from a program only when it was issued to an OAuth client
# allowlisted here (https://cloud.google.com/iap/docs/authentication-howto, "Authenticating from
# a desktop app"; IapSettings.accessSettings.oauthSettings.programmaticClients). The clients
# themselves are created once in the console: the OAuth admin API that could create them was
# shut down in March 2026.
resource "google_iap_settings" "service" {
  count = length(var.programmatic_clients) > 0 ? 1 : 0
  # The IAP resource of a Cloud Run service (underscore: `cloud_run-REGION`).
  name = "projects/${var.project_number}/iap_web/cloud_run-${var.region}/services/${var.service_name}"

  access_settings {
    oauth_settings {
      programmatic_clients = var.programmatic_clients
    }
  }
}
