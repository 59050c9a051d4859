#!/usr/bin/env python3
"""Runs the commands of the README and of the guides in docs/ exactly as written, on a clean
clone, and checks what they print.

    python3 .ci/readme.py            # check; exit 1 on any difference
    python3 .ci/readme.py --update   # rewrite the documents' outputs from a real run

The documents are run in the order of DOCUMENTS, in one bash session against one server
(the README's run command): the guides carry on from the walk-through, as a reader who
follows them in that order would. A document marks what to run with HTML comments before a
```sh block:

- `<!-- readme-test: dev -->`: the first screen. Its first line is run in the background (it
  must print a ready-to-paste `grpcurl … Validate` command); that printed command is then run
  and must answer `"valid": true`; every other line of the block is run too.
- `<!-- readme-test: server -->`: the run command, one line, started in the background; it must
  answer the health service on localhost:50051 before the next blocks run, and stop cleanly on
  SIGTERM at the end.
- `<!-- readme-test: skip -->`: a block that is shown, not run (it needs files or machines a
  test does not have).

Every other ```sh block whose lines start with `$ ` is a transcript: each command (with its
`\\` continuation lines) runs in one bash session, in order, in the clone, and what it prints
(stdout and stderr) must be what the README shows below it, except for what differs from run
to run: token strings, token ids, times, page tokens. A value that the README shows in an
earlier output and then uses in a later command (an id to revoke, a token copied into a
variable) is replaced by the value this run printed in its place, as a reader copying it
would.

The build cache is shared through CARGO_TARGET_DIR; the commands themselves are untouched.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# In the order a reader follows them.
DOCUMENTS = [
    "README.md",
    "docs/walkthrough.md",
    "docs/roles.md",
    "docs/leaks.md",
    "docs/front-door.md",
    "docs/operations.md",
    "docs/backup.md",
    "docs/configuration.md",
]

# What differs from run to run, most specific first.
VOLATILE = [
    ("page", r"(?<=\"nextPageToken\": \")[0-9A-Za-z_-]+"),
    ("token", r"jt[als]_[0-9A-Za-z]{71}"),
    ("time", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"),
    ("id", r"(?<![0-9A-Za-z_])[0-9A-Za-z]{22}(?![0-9A-Za-z])"),
]
VOLATILE_RE = re.compile("|".join(f"(?P<{k}>{p})" for k, p in VOLATILE))
# Shown as an ellipsis in the README: any text.
ELLIPSIS = "…"


def blocks(text):
    """(tag, body, start, end) of every ```sh block; `start`/`end` delimit its body."""
    for m in re.finditer(r"(?:<!-- readme-test: (\w+) -->\n)?```sh\n(.*?)```", text, re.S):
        yield m.group(1), m.group(2), m.start(2), m.end(2)


def transcript(body):
    """The (command, expected output) pairs of a transcript block."""
    pairs, lines, i = [], body.splitlines(), 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        cmd = [lines[i][2:]]
        while cmd[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd.append(lines[i])
        i += 1
        out = []
        while i < len(lines) and not lines[i].startswith("$ "):
            out.append(lines[i])
            i += 1
        pairs.append(("\n".join(cmd), "\n".join(out)))
    return pairs


def pattern(expected):
    """A regex matching `expected` with its volatile values captured in order."""
    parts, pos = [], 0
    for m in VOLATILE_RE.finditer(expected):
        parts.append(literal(expected[pos : m.start()]))
        parts.append(f"({dict(VOLATILE)[m.lastgroup]})")
        pos = m.end()
    parts.append(literal(expected[pos:]))
    return re.compile("".join(parts) + r"\Z", re.S)


def literal(text):
    return ".*?".join(re.escape(p) for p in text.split(ELLIPSIS))


def volatile(text):
    """The (kind, value) of every volatile value in `text`, in order."""
    return [(m.lastgroup, m.group(0)) for m in VOLATILE_RE.finditer(text)]


def longest_first(seen):
    """Replacements, a whole token before the id inside it."""
    return sorted(seen.items(), key=lambda kv: -len(kv[0]))


def normalize(text):
    # grpcurl prints an empty message as "{\n  \n}"; editors strip trailing spaces.
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


class Session:
    """One bash process that runs commands in order, keeping variables."""

    MARK = "__readme_test_done__"

    def __init__(self, cwd, env):
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            cwd=cwd, env=env, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def run(self, command, timeout=900):
        self.proc.stdin.write(f"{command}\necho; echo {self.MARK} $?\n")
        self.proc.stdin.flush()
        out, deadline = [], time.time() + timeout
        for line in self.proc.stdout:
            if line.startswith(self.MARK):
                return "".join(out)
            out.append(line)
            if time.time() > deadline:
                break
        sys.exit(f"no end to: {command}")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def grpc_health(addr="localhost:50051"):
    r = subprocess.run(
        ["grpcurl", "-plaintext", "-d", '{"service": "jeton.v1.TokenService"}', addr,
         "grpc.health.v1.Health/Check"],
        capture_output=True, text=True, timeout=10,
    )
    return r.returncode == 0 and "SERVING" in r.stdout


def start(command, cwd, env, **kw):
    print(f"$ {command} &", flush=True)
    kw.setdefault("stderr", open(os.path.join(cwd, "..", "server.log"), "a"))
    return subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, start_new_session=True, **kw)


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    return proc.returncode


def check_dev(body, cwd, env):
    """The first screen: the dev server prints a Validate command that validates."""
    lines = [l for l in body.splitlines() if l.strip() and not l.startswith("#")]
    server = start(lines[0], cwd, env, stdout=subprocess.PIPE, text=True)
    printed = None
    try:
        deadline = time.time() + 900
        for line in server.stdout:
            if "TokenService/Validate" in line:
                printed = line.strip()
                break
            if time.time() > deadline:
                break
        if not printed:
            sys.exit("dev mode printed no Validate command")
        for line in lines[1:]:
            if "<paste" in line or "paste" in line.lower():
                continue
            subprocess.run(["bash", "-c", line], cwd=cwd, env=env, check=True)
        print(f"$ {printed}", flush=True)
        r = subprocess.run(["bash", "-c", printed], cwd=cwd, env=env, capture_output=True, text=True)
        if '"valid": true' not in r.stdout:
            sys.exit(f"the printed command does not validate:\n{r.stdout}{r.stderr}")
    finally:
        if stop(server) != 0:
            sys.exit("dev mode did not stop cleanly on SIGTERM")


def main(update):
    texts = {}
    for name in DOCUMENTS:
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            texts[name] = f.read()
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    env["TERM"] = "dumb"
    # Logs as a reader sees them on a terminal (text), though this runs without one.
    env["JETON_LOG_FORMAT"] = "pretty"
    failures, seen = [], {}
    replacements = {name: [] for name in DOCUMENTS}
    with tempfile.TemporaryDirectory() as tmp:
        clone = os.path.join(tmp, "jeton")
        subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
        server, session = None, Session(clone, env)
        try:
            for name in DOCUMENTS:
                print(f"# {name}", flush=True)
                for tag, body, b_start, b_end in blocks(texts[name]):
                    if tag == "skip":
                        continue
                    if tag == "dev":
                        check_dev(body, clone, env)
                        continue
                    if tag == "server":
                        command = body.strip()
                        assert "\n" not in command, f"the run command is one line: {command!r}"
                        server = start(command, clone, env)
                        deadline = time.time() + 900
                        while not grpc_health():
                            if server.poll() is not None:
                                sys.exit(f"the run command exited with {server.returncode}")
                            if time.time() > deadline:
                                sys.exit("the service did not answer within 15 minutes")
                            time.sleep(1)
                        continue
                    pairs = transcript(body)
                    if not pairs:
                        continue
                    new_body = body
                    for raw, expected in pairs:
                        # A value shown earlier stands for the one this run printed.
                        command = raw
                        for old, new in longest_first(seen):
                            command = command.replace(old, new)
                        print(f"$ {command}", flush=True)
                        actual = normalize(session.run(command))
                        want = normalize(expected)
                        m = pattern(want).match(actual)
                        olds = volatile(want)
                        news = volatile(actual)
                        if [k for k, _ in olds] == [k for k, _ in news]:
                            seen.update(
                                (o, n) for (k, o), (_, n) in zip(olds, news) if k in ("token", "id")
                            )
                        if update and expected.strip():
                            new_body = new_body.replace(expected, actual, 1)
                        elif update and actual:
                            new_body = new_body.replace(f"$ {raw}\n", f"$ {raw}\n{actual}\n", 1)
                        elif not m:
                            failures.append((name, command, want, actual))
                    if update and new_body != body:
                        replacements[name].append((b_start, b_end, new_body))
        finally:
            session.close()
            if server and stop(server) != 0:
                failures.append(("README.md", "(server)", "a clean stop on SIGTERM", f"exit {server.returncode}"))
    if update:
        for name in DOCUMENTS:
            text = texts[name]
            for b_start, b_end, new_body in sorted(replacements[name], reverse=True):
                text = text[:b_start] + new_body + text[b_end:]
            # Commands that use a value shown earlier now use the one this run printed.
            for old, new in longest_first(seen):
                if len(old) >= 22:
                    text = text.replace(old, new)
            with open(os.path.join(ROOT, name), "w", encoding="utf-8") as f:
                f.write(text)
            print(f"{name}: {len(replacements[name])} block(s) rewritten from a real run")
        return
    for name, command, want, actual in failures:
        print(f"\n--- {name}: {command}\n--- it shows:\n{want}\n--- this run printed:\n{actual}")
    if failures:
        sys.exit(f"\n{len(failures)} command(s) print something else than their document shows")
    print("every command of the README and the guides ran as written and printed what they show")


if __name__ == "__main__":
    main("--update" in sys.argv[1:])
