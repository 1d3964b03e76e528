"""Test subprocesses only (on PYTHONPATH): point google-auth's fixed endpoints at local fakes.

google-auth lets a key file name its token endpoint, and the metadata server is chosen by
environment, but a user's ADC always refreshes at oauth2.googleapis.com and impersonation always
calls iamcredentials.googleapis.com (module constants). With DEPLOYER_TEST_GOOGLE_FAKES set to a
fake's base URL, those constants point there instead. Nothing of this ships in the package.
"""

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


if os.environ.get("DEPLOYER_TEST_GOOGLE_FAKES"):
    try:
        point_google_auth_at(os.environ["DEPLOYER_TEST_GOOGLE_FAKES"])
    except ImportError:  # a Python without google-auth (a tool's own venv): nothing to point
        pass
