"""The one way the deployer runs external tools (gcloud, terraform, docker).

Every call is logged as the exact command line, its output streams with a prefix while it runs
(long steps show progress), and a failure becomes a `ToolError` that names the step, the tool's
last error lines and what to do next. With `dry_run`, mutating commands are printed and not run;
read-only queries still run so the plan shown is the real one.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.errors import DeployerError

INSTALL_HINTS = {
    "gcloud": "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)",
    "terraform": "install Terraform 1.9 or newer (https://developer.hashicorp.com/terraform/install)",
    "docker": "install Docker, or build with Cloud Build (the default, no --local-docker)",
}


class ToolError(DeployerError, RuntimeError):
    """An external tool is missing or failed; the message says what to do next."""


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.stdout or "null")
        except json.JSONDecodeError as e:
            raise ToolError(f"`{shlex.join(self.argv[:3])}` did not print JSON: {e}") from None


@dataclass
class Runner:
    dry_run: bool = False
    echo: Callable[[str], None] = print
    env: Mapping[str, str] | None = None
    log: list[list[str]] = field(default_factory=list)

    def which(self, tool: str) -> str:
        path = shutil.which(tool, path=(self.env or os.environ).get("PATH"))
        if path is None:
            raise ToolError(
                f"{tool} is not installed or not on PATH: {INSTALL_HINTS.get(tool, '')}"
            )
        return path

    def run(
        self,
        argv: Sequence[str],
        *,
        step: str,
        mutating: bool = False,
        stream: bool = False,
        cwd: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
        fix: str = "",
        input_text: str | None = None,
    ) -> Result:
        """Run argv; `step` names it in progress and error lines, `fix` says what to do."""
        argv = [str(a) for a in argv]
        self.which(argv[0])
        shown = shlex.join(argv)
        self.log.append(argv)
        if mutating and self.dry_run:
            self.echo(f"[dry-run] would run: {shown}")
            return Result(argv, 0)
        self.echo(f"$ {shown}")
        env = dict(self.env or os.environ)
        env.update(extra_env or {})
        started = time.monotonic()
        if stream:
            result = self._stream(argv, cwd, env, input_text)
        else:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                input=input_text,
                stdin=None if input_text else subprocess.DEVNULL,
            )
            result = Result(argv, done.returncode, done.stdout, done.stderr)
        if result.returncode not in ok_codes:
            raise ToolError(_failure(step, result, time.monotonic() - started, fix))
        return result

    def _stream(
        self, argv: list[str], cwd: Path | None, env: dict[str, str], input_text: str | None
    ) -> Result:
        """Run with its output echoed line by line as it comes (long steps show progress)."""
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.PIPE if input_text else subprocess.DEVNULL,
        )
        if input_text:
            assert proc.stdin is not None
            proc.stdin.write(input_text)
            proc.stdin.close()
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            self.echo(f"  | {line.rstrip()}")
        return Result(argv, proc.wait(), "".join(lines), "")


def _failure(step: str, result: Result, seconds: float, fix: str) -> str:
    """One line: the step, the tool's exit code, its error lines, and what to do next."""
    tail = [ln for ln in (result.stderr or result.stdout).strip().splitlines() if ln.strip()]
    errors = [ln.strip() for ln in tail if "rror" in ln] or [ln.strip() for ln in tail[-3:]]
    detail = " / ".join(errors[-3:])[:600]
    return (
        f"{step} failed ({result.argv[0]} exited {result.returncode} after {seconds:.0f} s): "
        f"{detail or 'no output'}" + (f". {fix}" if fix else "")
    )
