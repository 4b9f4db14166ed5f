"""Keeps compose/compose.yaml true: valid YAML, and every LIFEBOAT_* variable it sets is one the
worker reads (so a renamed or removed setting cannot linger in the operators' file)."""
import pathlib
import re
import sys

import yaml

root = pathlib.Path(__file__).resolve().parents[2]
compose = yaml.safe_load((root / "compose/compose.yaml").read_text())
read = set()
for source in (root / "Sources").rglob("*.swift"):
    read |= set(re.findall(r'"(LIFEBOAT_[A-Z_]+)"', source.read_text()))
problems = []
for name, service in compose.get("services", {}).items():
    environment = service.get("environment") or {}
    keys = environment.keys() if isinstance(environment, dict) else [e.split("=", 1)[0] for e in environment]
    problems += [f"service {name}: {key} is not read by Lifeboat" for key in keys if key.startswith("LIFEBOAT_") and key not in read]
if "worker" not in compose.get("services", {}):
    problems.append("no worker service")
for problem in problems:
    print(f"compose/compose.yaml: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
