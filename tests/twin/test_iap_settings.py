"""The twin's IAP honours google_iap_settings per service: only the OAuth clients allowlisted for
a service (access_settings.oauth_settings.programmatic_clients) may carry a person's ID token
to it (https://cloud.google.com/iap/docs/authentication-howto, "Authenticating from a desktop
app")."""

from __future__ import annotations

import pytest

from tests.twin import state as st

NAME = "projects/123/iap_web/cloud_run-europe-west1/services/{}"


def _settings(service: str, clients: list[str], *, as_lists: bool) -> dict:
    oauth = {"programmatic_clients": clients}
    access = {"oauth_settings": [oauth] if as_lists else oauth}
    return {"name": NAME.format(service), "access_settings": [access] if as_lists else access}


@pytest.mark.parametrize("as_lists", [True, False], ids=["terraform-lists", "objects"])
def test_programmatic_clients_are_read_per_service(as_lists):
    doc = {
        "resources": {
            "google_iap_settings": {
                "module.service.google_iap_settings.programmatic_clients[0]": _settings(
                    "mlflow", ["desktop.apps.googleusercontent.com"], as_lists=as_lists
                ),
                "other": _settings("other", ["elsewhere.apps"], as_lists=as_lists),
            }
        }
    }
    assert st.programmatic_clients(doc, "mlflow") == {"desktop.apps.googleusercontent.com"}
    assert st.programmatic_clients(doc, "nothing-set") == set()
    assert st.programmatic_clients({"resources": {}}, "mlflow") == set()
