"""Validates compose.yaml's structure (no Docker engine on CI): YAML syntax, known top-level keys,
every service has an image or build, depends_on and volumes refer to things that exist, and the
replicas share the train job's database and model volume."""
import sys

import yaml

TOP_LEVEL = {"services", "volumes", "networks", "configs", "secrets", "name", "version"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def fail(message):
    print(f"compose: {message}", file=sys.stderr)
    sys.exit(1)


def main(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or "services" not in doc:
        fail("no services")
    extra = {k for k in doc if not k.startswith("x-")} - TOP_LEVEL
    if extra:
        fail(f"unknown top-level keys {sorted(extra)}")
    services = doc["services"]
    volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            fail(f"{name}: needs image or build")
        deps = svc.get("depends_on") or {}
        for dep, spec in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            if dep not in services:
                fail(f"{name}: depends on unknown service {dep}")
            if spec and spec.get("condition", "service_started") not in CONDITIONS:
                fail(f"{name}: unknown condition {spec.get('condition')}")
        for v in svc.get("volumes") or []:
            source = v.split(":")[0] if isinstance(v, str) else v.get("source")
            if source and not source.startswith(("/", ".")) and source not in volumes:
                fail(f"{name}: volume {source} is not declared")
        env = svc.get("environment") or {}
        if not isinstance(env, (dict, list)):
            fail(f"{name}: environment must be a map or list")
    replicas = [n for n, s in services.items() if s.get("command") == ["serve"]]
    if len(replicas) < 2:
        fail("expected at least two serving replicas")
    urls = {services[n]["environment"]["FMRECALL_DATABASE__URL"] for n in replicas + ["train"]}
    if len(urls) != 1 or not next(iter(urls)).startswith("postgres://"):
        fail(f"replicas and train must share one PostgreSQL database, got {urls}")
    print(f"compose: {len(services)} services ({', '.join(services)}), {len(volumes)} volumes: ok")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "compose.yaml")
