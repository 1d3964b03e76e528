"""`deployer login --no-browser` driven as a person would: open the printed URL in a (fake)
browser signed in as them, which Google's consent screen (the fakes) sends back to the local
server the command runs."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

import requests

from tests.support.google_fakes import GoogleFakes


def sign_in_from_the_command_line(
    fakes: GoogleFakes, deployer: str, env: Mapping[str, str], email: str
) -> str:
    """Run `deployer login --no-browser` with `env` as `email`; return what it printed."""
    fakes.browser_user = email
    proc = subprocess.Popen(
        [deployer, "login", "--no-browser"],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while "http" not in line:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        url = line[line.index("http") :].strip()
        requests.get(url, timeout=30)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    return out
