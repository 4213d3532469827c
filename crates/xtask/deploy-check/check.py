"""Checks of deploy/ that need neither Docker nor Kubernetes (run by `cargo xtask test`).

1. hadolint lints deploy/Dockerfile.
2. kubernetes-validate validates every manifest in deploy/k8s strictly (unknown fields fail).
3. deploy/docker-compose.yml parses, has the services the kit promises, and its references
   (depends_on, the mounted nginx.conf, nginx's upstream hosts) exist.
4. Every HERALD_* variable and every flag given to `herald <command>` anywhere in deploy/ is one
   that the binary accepts, as `herald <command> --help` says, so the kit cannot drift.

Usage: check.py <repo root> <herald binary> <venv bin dir>
"""

import pathlib
import re
import subprocess
import sys

import yaml

COMMANDS = ("serve", "edge", "admin", "migrate")
ENV = re.compile(r"\bHERALD_[A-Z0-9_]+\b")
FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def accepted(herald):
    """{command: (flags, env vars)} from the binary's own help."""
    out = {}
    for command in COMMANDS:
        text = subprocess.run([herald, command, "--help"], check=True, capture_output=True, text=True).stdout
        out[command] = (set(FLAG.findall(text)) | {"--help"}, set(ENV.findall(text)))
    return out


def invocations(root):
    """Every herald invocation in deploy/: (where, command, [args])."""
    found = []
    deploy = root / "deploy"
    compose = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if "herald" in str(service.get("image", "")) and service.get("command"):
            command = service["command"]
            found.append((f"docker-compose.yml: {name}", command[0], command[1:]))
    for path in sorted((deploy / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = (doc or {}).get("spec", {})
            pod = spec.get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                if "herald" not in container.get("image", ""):
                    continue
                args = list(container.get("command", [])[1:]) + list(container.get("args", []))
                found.append((f"k8s/{path.name}: {container['name']}", args[0], args[1:]))
    dockerfile = (deploy / "Dockerfile").read_text()
    cmd = re.search(r'^CMD \[(.*)\]', dockerfile, re.M)
    words = [w.strip().strip('"') for w in cmd.group(1).split(",")]
    found.append(("Dockerfile: CMD", words[0], words[1:]))
    # Commands written out in prose and shell (README, comments).
    for path in sorted(deploy.rglob("*")):
        if path.is_file():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                for m in re.finditer(r"\bherald (serve|edge|admin|migrate)\b((?: +--[a-z][a-z0-9-]*(?:[ =][^ -][^ ]*)?)*)", line):
                    found.append((f"{path.relative_to(deploy)}:{n}", m.group(1), m.group(2).split()))
    return found


def drift(root, helps):
    problems = []
    all_env = set().union(*(env for _, env in helps.values()))
    for path in sorted((root / "deploy").rglob("*")):
        if path.is_file():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                for var in ENV.findall(line):
                    # HERALD_TEST_*: the test command's own variables, which the README names.
                    if var not in all_env and not var.startswith("HERALD_TEST_"):
                        problems.append(f"deploy/{path.relative_to(root / 'deploy')}:{n}: {var} is not a variable herald reads")
    for where, command, args in invocations(root):
        if command not in helps:
            problems.append(f"{where}: `herald {command}` is not a command")
            continue
        for arg in args:
            flag = FLAG.match(str(arg))
            if flag and flag.group(0) not in helps[command][0]:
                problems.append(f"{where}: `herald {command}` has no flag {flag.group(0)}")
    return problems


def compose_problems(root):
    deploy = root / "deploy"
    compose = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    services = compose["services"]
    problems = []
    want = {"postgres", "redis", "migrate", "admin", "edge1", "edge2", "edge3", "nginx"}
    if set(services) != want:
        problems.append(f"docker-compose.yml: services {sorted(services)}, want {sorted(want)}")
    for name, service in services.items():
        for dep in service.get("depends_on", []):
            if dep not in services:
                problems.append(f"docker-compose.yml: {name} depends on unknown {dep}")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not (deploy / source).exists():
                problems.append(f"docker-compose.yml: {name} mounts missing {source}")
    nginx = (deploy / "nginx.conf").read_text()
    for host in set(re.findall(r"server ([a-z0-9]+):8080", nginx)):
        if host not in services:
            problems.append(f"nginx.conf: upstream {host} is not a compose service")
    for name in ("edge1", "edge2", "edge3"):
        if f"server {name}:8080" not in nginx:
            problems.append(f"nginx.conf: {name} is not an upstream")
    return problems


def main():
    root, herald, venv_bin = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    deploy = root / "deploy"
    failed = False

    def run(args):
        nonlocal failed
        print("==>", " ".join(str(a) for a in args), flush=True)
        failed |= subprocess.run(args).returncode != 0

    run([venv_bin / "hadolint", deploy / "Dockerfile"])
    run([venv_bin / "kubernetes-validate", "--strict", "--quiet", "-k", "1.31.0", *sorted((deploy / "k8s").glob("*.yaml"))])

    helps = accepted(herald)
    # The check must be able to fail: a flag and a variable herald does not have are caught.
    assert "--no-such-flag" not in helps["edge"][0] and "HERALD_NO_SUCH" not in helps["edge"][1]
    assert "--drain-secs" in helps["edge"][0] and "HERALD_DRAIN_SECS" in helps["edge"][1], helps["edge"]
    problems = compose_problems(root) + drift(root, helps)
    n = len(invocations(root))
    for problem in problems:
        print("deploy kit:", problem)
    print(f"==> deploy kit: {n} herald invocations and every HERALD_* variable checked against `herald <command> --help`")
    if problems or failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
