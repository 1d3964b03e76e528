"""Test subprocesses only (on PYTHONPATH): point google-auth's fixed endpoints at local fakes.

google-auth lets a key file name its token endpoint, and the metadata server is chosen by
environment, but a user's ADC always refreshes at oauth2.googleapis.com and impersonation always
calls iamcredentials.googleapis.com (module constants). With DEPLOYER_TEST_GOOGLE_FAKES set to a
fake's base URL, those constants point there instead. Nothing of this ships in the package.
"""

import contextlib
import os


def point_google_auth_at(base: str, setattr_=setattr) -> None:
    import google.auth.external_account as external
    import google.auth.iam as iam
    import google.auth.impersonated_credentials as impersonated
    import google.oauth2.credentials as user

    setattr_(user, "_GOOGLE_OAUTH2_TOKEN_ENDPOINT", f"{base}/token")
    setattr_(impersonated, "_GOOGLE_OAUTH2_TOKEN_ENDPOINT", f"{base}/token")
    accounts = f"{base}/v1/projects/-/serviceAccounts/{{}}"
    setattr_(iam, "_IAM_ENDPOINT", accounts + ":generateAccessToken")
    setattr_(iam, "_IAM_SIGN_ENDPOINT", accounts + ":signBlob")
    setattr_(iam, "_IAM_SIGNJWT_ENDPOINT", accounts + ":signJwt")
    setattr_(iam, "_IAM_IDTOKEN_ENDPOINT", accounts + ":generateIdToken")
    setattr_(external, "_CLOUD_RESOURCE_MANAGER", f"{base}/v1/projects/")
    from deployer import user_login

    setattr_(user_login, "AUTH_URI", f"{base}/o/oauth2/auth")
    setattr_(user_login, "TOKEN_URI", f"{base}/token")


if os.environ.get("DEPLOYER_TEST_GOOGLE_FAKES"):
    # The fakes speak plain HTTP on loopback; oauthlib refuses that unless told.
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    # A Python without google-auth (a tool's own venv) has nothing to point.
    with contextlib.suppress(ImportError):
        point_google_auth_at(os.environ["DEPLOYER_TEST_GOOGLE_FAKES"])
