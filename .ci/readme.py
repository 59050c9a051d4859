#!/usr/bin/env python3
"""Runs the README's commands exactly as written, on a clean checkout.

`python3 .ci/readme.py run-command`: takes the command of the README's "Run it" section
and the walk-through's bootstrap line, runs them in a fresh clone of the repository (the
build cache is shared through CARGO_TARGET_DIR, the commands are untouched), and checks that
the service answers, that bootstrap prints a token, and that the token validates.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN_RE = re.compile(r"^jt[als]_[0-9A-Za-z]{71}$")


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def sh_blocks(text):
    """The ```sh code blocks of `text`, in order."""
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def run_command(text):
    """The one command of the first code block of "## Run it"."""
    section = text.split("\n## Run it\n", 1)[1]
    block = sh_blocks(section)[0].strip()
    assert "\n" not in block, f"the run command is one line: {block!r}"
    return block


def bootstrap_line(text):
    """The walk-through's `$ TOKEN=$(… bootstrap …)` line, without its prompt."""
    for block in sh_blocks(text):
        for line in block.splitlines():
            if line.startswith("$ TOKEN=$(") and " bootstrap " in line:
                return line[2:]
    sys.exit("README: no `$ TOKEN=$(... bootstrap ...)` line")


def grpcurl(*args, timeout=10):
    return subprocess.run(
        ["grpcurl", *args], capture_output=True, text=True, timeout=timeout
    )


def wait_serving(deadline, server):
    body = '{"service": "jeton.v1.TokenService"}'
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"the run command exited with {server.returncode}")
        r = grpcurl("-plaintext", "-d", body, "localhost:50051", "grpc.health.v1.Health/Check")
        if r.returncode == 0 and "SERVING" in r.stdout:
            return
        time.sleep(1)
    sys.exit("the service did not answer within the timeout")


def check_run_command():
    text = readme()
    command, boot = run_command(text), bootstrap_line(text)
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    with tempfile.TemporaryDirectory() as tmp:
        clone = os.path.join(tmp, "jeton")
        subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
        print(f"$ {command}", flush=True)
        server = subprocess.Popen(
            ["bash", "-c", command], cwd=clone, env=env, start_new_session=True
        )
        try:
            # The first run compiles jeton in release mode.
            wait_serving(time.time() + 900, server)
            print(f"$ {boot}", flush=True)
            out = subprocess.run(
                ["bash", "-c", f"{boot}\necho \"$TOKEN\""],
                cwd=clone, env=env, capture_output=True, text=True, timeout=600,
            )
            token = out.stdout.strip()
            if out.returncode != 0 or not TOKEN_RE.match(token):
                sys.exit(f"bootstrap printed no token:\n{out.stdout}\n{out.stderr}")
            body = '{"token": "%s"}' % token
            r = grpcurl("-plaintext", "-d", body, "localhost:50051", "jeton.v1.TokenService/Validate")
            if '"valid": true' not in r.stdout:
                sys.exit(f"the bootstrap token does not validate:\n{r.stdout}{r.stderr}")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        if server.returncode != 0:
            sys.exit(f"the server did not stop cleanly on SIGTERM: {server.returncode}")
        if not os.path.exists(os.path.join(clone, "jeton.db")):
            sys.exit("no jeton.db in the directory the service was started from")
    print("README run command, bootstrap and validation: ok")


if __name__ == "__main__":
    {"run-command": check_run_command}[sys.argv[1]]()
