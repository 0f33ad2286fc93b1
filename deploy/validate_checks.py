#!/usr/bin/env python3
"""Structural checks of the deployment files, one per subcommand, for
deploy/validate.sh. Each prints what is wrong and exits 1, or exits 0
silently. Needs PyYAML (validate.sh provides it).

    validate_checks.py compose FILE prod|dev
    validate_checks.py compose-schema FILE SCHEMA
    validate_checks.py dashboard
    validate_checks.py grafana-provisioning
    validate_checks.py rules
    validate_checks.py am-drift
    validate_checks.py am-examples OUT
    validate_checks.py dockerfile
    validate_checks.py kustomization
    validate_checks.py configmap-lookout OUT
    validate_checks.py kustomization-replicas
    validate_checks.py configmap-lookout-replicas OUT
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

import yaml

DEPLOY = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DEPLOY)

# runbook_url values point into this repository on its hosting site; the
# organisation is a placeholder (see the comment in the rule files).
RUNBOOK_BASE = "https://github.com/example/lookout/blob/main/"

EXPECTED_SERVICES = ["redis", "redis-exporter", "prometheus", "alertmanager", "grafana", "lookout"]
MONITORING_PROFILE = "cache-monitoring"

DASHBOARD = os.path.join(DEPLOY, "grafana", "dashboards", "redis-cache-overview.json")
REQUIRED_PANELS = [
    "Cache Hit Rate",
    "Command Latency",
    "Memory Fragmentation",
    "Memory Usage",
    "Connected Clients",
    "Probe Success",
    "Cross-check Agreement",
    "Relay Queue Depth",
    "Relay Delivery Failures",
    "Node Roles",
    "Master Changes",
    "Replication Lag",
    "Replication Link",
    "Sentinels",
    "Cluster Slots",
]
# One line per instance: summed over every instance, one Redis's slow
# commands vanish into the others' fast ones.
LATENCY_EXPR = (
    'sum by (instance) (rate(redis_commands_duration_seconds_total{instance=~"$instance"}[1m]))'
    ' / sum by (instance) (rate(redis_commands_total{instance=~"$instance"}[1m]))'
)
# Panels of the Redis row: each follows the $instance variable.
INSTANCE_PANELS = ["Cache Hit Rate", "Command Latency", "Connected Clients", "Memory Usage", "Memory Fragmentation"]

# alert -> (for, severity) as the runbooks and README describe them.
EXPECTED_ALERTS = {
    "RedisConnectionExhaustion": ("5m", "critical"),
    "RedisHighMemoryUsage": ("10m", "critical"),
    "LookoutProbeFailing": ("2m", "warning"),
    "LookoutCrossCheckDisagree": ("5m", "warning"),
    "LookoutDown": ("2m", "critical"),
    "RedisFailover": (None, "info"),
    "RedisReplicationBroken": ("2m", "warning"),
    "SentinelQuorumLost": ("1m", "critical"),
    "RedisSplitBrain": ("1m", "critical"),
    "RedisClusterDegraded": ("1m", "critical"),
}


class Problems(list):
    def add(self, msg: str) -> None:
        self.append(msg)

    def finish(self) -> int:
        for p in self:
            print(p)
        return 1 if self else 0


def load_yaml(path: str):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


# ------------------------------------------------------------------ compose --


def parse_port(p) -> tuple[str, str, str]:
    """(host ip, published, target) of a short or long port entry."""
    if isinstance(p, dict):
        return str(p.get("host_ip", "")), str(p.get("published", "")), str(p.get("target", ""))
    parts = str(p).split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2].split("/")[0]
    if len(parts) == 2:
        return "", parts[0], parts[1].split("/")[0]
    return "", "", parts[0]


def volume_entries(svc: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume entry; source "" for anonymous ones."""
    out = []
    for v in svc.get("volumes", []) or []:
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), str(v.get("target", ""))))
        else:
            parts = str(v).split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return out


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# The production file's optional profile: replicas of lookout on a shared
# PostgreSQL, and that PostgreSQL.
REPLICAS_PROFILE = "replicas"
REPLICAS_SERVICES = {"postgres", "lookout-a", "lookout-b"}


def check_compose(path: str, flavour: str) -> int:
    p = Problems()
    base = os.path.dirname(os.path.abspath(path))
    d = load_yaml(path)
    services = d.get("services", {}) or {}
    top_volumes = d.get("volumes", {}) or {}
    top_secrets = d.get("secrets", {}) or {}

    for name in EXPECTED_SERVICES:
        if name not in services:
            p.add(f"service `{name}` missing")

    for name, svc in services.items():
        for src, target in volume_entries(svc):
            if not src:
                continue
            if src.startswith((".", "/", "~")):
                full = os.path.normpath(os.path.join(base, src))
                if not os.path.exists(full):
                    p.add(f"{name}: mounts {src} -> {target}, but {rel(full)} does not exist")
            elif src not in top_volumes:
                p.add(f"{name}: named volume `{src}` is not declared under top-level volumes")
        build = svc.get("build")
        if build is not None:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            ctx_full = os.path.normpath(os.path.join(base, ctx))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not os.path.isdir(ctx_full):
                p.add(f"{name}: build context {ctx} does not exist")
            elif not os.path.isfile(os.path.join(ctx_full, dockerfile)):
                p.add(f"{name}: dockerfile {dockerfile} not found in build context {ctx}")
        env_files = svc.get("env_file", [])
        for ef in [env_files] if isinstance(env_files, str) else env_files or []:
            ef_path = ef if isinstance(ef, str) else ef.get("path", "")
            if not os.path.exists(os.path.join(base, ef_path)):
                p.add(f"{name}: env_file {ef_path} does not exist")
        for s in svc.get("secrets", []) or []:
            sname = s if isinstance(s, str) else s.get("source")
            if sname not in top_secrets:
                p.add(f"{name}: secret `{sname}` is not declared under top-level secrets")
        # Credentials come from the environment, never literally from here.
        for key, value in env_of(svc).items():
            # A `*_FILE` naming a mounted secret is where a credential is, not one.
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                continue
            if re.search(r"PASSWORD|TOKEN|SECRET|_KEY$|AUTH", key) and value and not value.startswith("${"):
                p.add(f"{name}: {key} has a literal value; take it from the environment (${{{key}:-}})")
        profiles = svc.get("profiles") or []
        if flavour == "dev":
            if name == "redis" and profiles:
                p.add("redis: must run without a profile in the dev file (the backends need it)")
            if name != "redis" and MONITORING_PROFILE not in profiles:
                p.add(f"{name}: not behind the `{MONITORING_PROFILE}` profile")
        elif profiles and not (profiles == [REPLICAS_PROFILE] and name in REPLICAS_SERVICES):
            p.add(f"{name}: production file has profiles {profiles}; every service should start (only {sorted(REPLICAS_SERVICES)} may be behind `{REPLICAS_PROFILE}`)")

    for sname, sdef in top_secrets.items():
        f = (sdef or {}).get("file")
        if not f:
            continue
        full = os.path.normpath(os.path.join(base, f))
        secrets_dir = os.path.join(DEPLOY, "secrets")
        if os.path.dirname(full) != secrets_dir:
            p.add(f"secret `{sname}`: file {f} should be in deploy/secrets/, which git ignores")
        ignore = os.path.join(secrets_dir, ".gitignore")
        if not os.path.isfile(ignore) or "*" not in open(ignore).read().split():
            p.add("deploy/secrets/.gitignore must ignore everything (`*`) but its README")

    def uses_volume(service: str, volume: str, target: str | None = None) -> None:
        svc = services.get(service, {})
        if volume not in top_volumes:
            p.add(f"named volume `{volume}` not declared")
        if not any(src == volume and (target is None or t == target) for src, t in volume_entries(svc)):
            p.add(f"{service}: does not mount volume `{volume}`" + (f" at {target}" if target else ""))

    uses_volume("redis", "redis_data", "/data")
    uses_volume("prometheus", "prometheus_data")
    uses_volume("grafana", "grafana_data", "/var/lib/grafana")

    # Redis is append-only: in the mounted redis.conf or on its command line.
    redis = services.get("redis", {})
    aof = "--appendonly yes" in " ".join(map(str, redis.get("command", []) or []))
    for src, _ in volume_entries(redis):
        full = os.path.normpath(os.path.join(base, src))
        if src.startswith(".") and os.path.isfile(full):
            aof = aof or bool(re.search(r"^\s*appendonly\s+yes\s*$", open(full).read(), re.M))
    if not aof:
        p.add("redis: append-only persistence (appendonly yes) not configured")

    exporter = services.get("redis-exporter", {})
    if not str(exporter.get("image", "")).startswith("oliver006/redis_exporter"):
        p.add("redis-exporter: image is not oliver006/redis_exporter")
    if not {"REDIS_ADDR", "REDIS_PASSWORD"} <= set(env_of(exporter)):
        p.add("redis-exporter: REDIS_ADDR and REDIS_PASSWORD must come from the REDIS_* settings")

    grafana = services.get("grafana", {})
    genv = env_of(grafana)
    if genv.get("GF_SECURITY_ADMIN_USER") != "${GRAFANA_ADMIN_USER:-admin}":
        p.add("grafana: GF_SECURITY_ADMIN_USER should be ${GRAFANA_ADMIN_USER:-admin}")
    if genv.get("GF_SECURITY_ADMIN_PASSWORD") != "${GRAFANA_ADMIN_PASSWORD:-admin}":
        p.add("grafana: GF_SECURITY_ADMIN_PASSWORD should be ${GRAFANA_ADMIN_PASSWORD:-admin}")
    want_port = "3000" if flavour == "prod" else "3001"
    ports = [parse_port(x) for x in grafana.get("ports", []) or []]
    if not any(pub == want_port and tgt == "3000" for _, pub, tgt in ports):
        p.add(f"grafana: not published on {want_port} (container port 3000); found {ports}")

    lookout = services.get("lookout", {})
    build = lookout.get("build") or {}
    if not isinstance(build, dict) or build.get("context") != ".." or build.get("dockerfile") != "deploy/Dockerfile":
        p.add("lookout: build should be context `..`, dockerfile `deploy/Dockerfile`")

    # Mount points agree with the files that name them.
    prom = services.get("prometheus", {})
    if ("./prometheus/alerts", "/etc/prometheus/alerts") not in volume_entries(prom):
        p.add("prometheus: ./prometheus/alerts must be mounted at /etc/prometheus/alerts (rule_files: alerts/*.yml)")
    am_cfg = load_yaml(os.path.join(DEPLOY, "alertmanager", "alertmanager.yml"))
    am_secrets = {s if isinstance(s, str) else s.get("source") for s in services.get("alertmanager", {}).get("secrets", []) or []}
    for rcv in am_cfg.get("receivers", []):
        for wh in rcv.get("webhook_configs", []) or []:
            cf = (((wh.get("http_config") or {}).get("authorization") or {}).get("credentials_file")) or ""
            if cf.startswith("/run/secrets/") and cf.rsplit("/", 1)[1] not in am_secrets:
                p.add(f"alertmanager: reads {cf}, but the service has no secret `{cf.rsplit('/', 1)[1]}`")
    return p.finish()


def check_compose_schema(path: str, schema_path: str) -> int:
    import jsonschema

    p = Problems()
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    # Chosen by hand: the schema names its draft by an http:// URL that
    # jsonschema does not map to the draft's validator.
    drafts = {
        "2019-09": jsonschema.Draft201909Validator,
        "2020-12": jsonschema.Draft202012Validator,
        "draft-07": jsonschema.Draft7Validator,
    }
    declared = str(schema.get("$schema", ""))
    cls = next((v for k, v in drafts.items() if k in declared), jsonschema.Draft7Validator)
    for err in sorted(cls(schema).iter_errors(load_yaml(path)), key=lambda e: list(e.path)):
        where = "/".join(map(str, err.path)) or "(top level)"
        p.add(f"{where}: {err.message}")
    return p.finish()


# ---------------------------------------------------------------- dashboard --


def panels_of(dash: dict) -> list[dict]:
    out = []
    for panel in dash.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def check_dashboard() -> int:
    p = Problems()
    try:
        with open(DASHBOARD, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{rel(DASHBOARD)}: {e}")
        return 1
    if dash.get("title") != "Redis Cache Overview":
        p.add(f"title is {dash.get('title')!r}, expected 'Redis Cache Overview'")
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        p.add(f"schemaVersion {dash.get('schemaVersion')} is older than Grafana 9 (36)")
    if not dash.get("uid"):
        p.add("no uid: links to the dashboard would change on every provisioning")
    panels = panels_of(dash)
    by_title = {x.get("title"): x for x in panels}
    for t in REQUIRED_PANELS:
        if t not in by_title:
            p.add(f"panel {t!r} missing")
    ids = [x.get("id") for x in panels]
    if len(ids) != len(set(ids)):
        p.add("panel ids are not unique")
    for x in panels:
        if x.get("type") == "row":
            continue
        title = x.get("title")
        if (x.get("datasource") or {}).get("uid") != "prometheus":
            p.add(f"panel {title!r}: datasource is not referenced by uid `prometheus`")
        for t in x.get("targets", []):
            if (t.get("datasource") or {}).get("uid") != "prometheus":
                p.add(f"panel {title!r} target {t.get('refId')}: datasource is not uid `prometheus`")
            if not t.get("expr"):
                p.add(f"panel {title!r} target {t.get('refId')}: no expr")
        if "gridPos" not in x:
            p.add(f"panel {title!r}: no gridPos")

    def exprs(title: str) -> list[str]:
        return [t.get("expr", "") for t in by_title.get(title, {}).get("targets", [])]

    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list", [])}
    inst = variables.get("instance")
    if not inst or "label_values(redis_up, instance)" not in json.dumps(inst.get("query")):
        p.add("no `instance` variable over label_values(redis_up, instance)")
    elif not inst.get("includeAll") or inst.get("allValue") != ".*":
        p.add("variable `instance`: needs All, with `.*` as its value")
    for title in INSTANCE_PANELS:
        for e in exprs(title):
            if 'instance=~"$instance"' not in e:
                p.add(f"{title}: `{e}` does not follow $instance")
    hit = " ".join(exprs("Cache Hit Rate"))

    def windowed(metric: str) -> bool:
        # `rate(m[5m])`, with or without a selector such as {instance=~"$instance"}.
        return re.search(r"rate\(" + metric + r"(\{[^}]*\})?\[5m\]\)", hit) is not None

    if not windowed("redis_keyspace_hits_total") or not windowed("redis_keyspace_misses_total"):
        p.add("Cache Hit Rate: not a windowed rate(...[5m]) of hits over hits + misses")
    if LATENCY_EXPR not in exprs("Command Latency"):
        p.add(f"Command Latency: expected `{LATENCY_EXPR}`")
    frag = by_title.get("Memory Fragmentation", {})
    defaults = frag.get("fieldConfig", {}).get("defaults", {})
    steps = [s.get("value") for s in defaults.get("thresholds", {}).get("steps", [])]
    style = defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode")
    if 1.8 not in steps or style not in ("line", "line+area", "dashed", "dashed+area"):
        p.add(f"Memory Fragmentation: the 1.8 threshold is not drawn as a line (steps {steps}, style {style})")
    if "redis_mem_fragmentation_ratio" not in " ".join(exprs("Memory Fragmentation")):
        p.add("Memory Fragmentation: no redis_mem_fragmentation_ratio query")
    cc = exprs("Connected Clients")
    if not (any("redis_connected_clients" in e for e in cc) and any("redis_config_maxclients" in e for e in cc)):
        p.add("Connected Clients: needs redis_connected_clients and redis_config_maxclients as two series")
    if "redis_memory_used_bytes" not in " ".join(exprs("Memory Usage")):
        p.add("Memory Usage: no redis_memory_used_bytes query")
    if "lookout_probe_success" not in " ".join(exprs("Probe Success")):
        p.add("Probe Success: no lookout_probe_success query")
    cca = by_title.get("Cross-check Agreement", {})
    if "lookout_crosscheck_agree" not in " ".join(exprs("Cross-check Agreement")) or cca.get("type") not in ("table", "heatmap"):
        p.add("Cross-check Agreement: needs a table or heatmap of lookout_crosscheck_agree")
    if "lookout_relay_queue_depth" not in " ".join(exprs("Relay Queue Depth")):
        p.add("Relay Queue Depth: no lookout_relay_queue_depth query")
    if "lookout_relay_deliveries_total" not in " ".join(exprs("Relay Delivery Failures")):
        p.add("Relay Delivery Failures: no lookout_relay_deliveries_total query")
    return p.finish()


def check_grafana_provisioning() -> int:
    p = Problems()
    ds = load_yaml(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "prometheus.yml"))
    sources = {d.get("uid"): d for d in ds.get("datasources", [])}
    prom = sources.get("prometheus")
    if not prom:
        p.add("no data source with uid `prometheus` (the dashboard refers to it)")
    else:
        if prom.get("type") != "prometheus":
            p.add("data source `prometheus` is not of type prometheus")
        if prom.get("url") != "http://prometheus:9090":
            p.add(f"data source url is {prom.get('url')}, expected http://prometheus:9090")
    dp = load_yaml(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "dashboards.yml"))
    providers = dp.get("providers", [])
    folder = [x for x in providers if x.get("folder") == "Trinity Cache"]
    if not folder:
        p.add("no dashboard provider with folder `Trinity Cache`")
    paths = {(x.get("options") or {}).get("path") for x in folder}
    for compose in ("docker-compose.example.yml", "docker-compose-dev.example.yml"):
        d = load_yaml(os.path.join(DEPLOY, compose))
        mounts = dict(volume_entries(d.get("services", {}).get("grafana", {})))
        target = mounts.get("./grafana/dashboards")
        if target not in paths:
            p.add(f"{compose}: ./grafana/dashboards is mounted at {target}, the provider reads {sorted(map(str, paths))}")
        if mounts.get("./grafana/provisioning") != "/etc/grafana/provisioning":
            p.add(f"{compose}: ./grafana/provisioning is not mounted at /etc/grafana/provisioning")
    return p.finish()


# -------------------------------------------------------------------- rules --


def github_slug(heading: str) -> str:
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def check_rules() -> int:
    p = Problems()
    alerts: dict[str, list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(DEPLOY, "prometheus", "alerts", "*.yml"))):
        for group in load_yaml(path).get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    alerts.setdefault(rule["alert"], []).append(rule)
    for name, (for_, severity) in EXPECTED_ALERTS.items():
        for rule in alerts.get(name, []):
            if rule.get("for") != for_:
                p.add(f"{name}: for {rule.get('for')}, expected {for_}")
            if (rule.get("labels") or {}).get("severity") != severity:
                p.add(f"{name}: severity {(rule.get('labels') or {}).get('severity')}, expected {severity}")
        if name not in alerts:
            p.add(f"alert {name} missing")
    for name, rules in alerts.items():
        for rule in rules:
            ann = rule.get("annotations") or {}
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    p.add(f"{name}: annotation {key} missing")
            if not (rule.get("labels") or {}).get("severity"):
                p.add(f"{name}: label severity missing")
            url = ann.get("runbook_url", "")
            if url and not url.startswith(RUNBOOK_BASE):
                p.add(f"{name}: runbook_url {url} does not start with {RUNBOOK_BASE}")
            elif url:
                path, _, anchor = url[len(RUNBOOK_BASE) :].partition("#")
                full = os.path.join(ROOT, path)
                if not os.path.isfile(full):
                    p.add(f"{name}: runbook {path} does not exist")
                elif anchor:
                    headings = re.findall(r"^#+\s+(.+)$", open(full, encoding="utf-8").read(), re.M)
                    if anchor not in {github_slug(h) for h in headings}:
                        p.add(f"{name}: runbook {path} has no heading for #{anchor}")

    # Every alert is unit-tested: firing at least once and silent at least once.
    fired, silent = set(), set()
    for path in glob.glob(os.path.join(DEPLOY, "prometheus", "tests", "*.test.yml")):
        for test in load_yaml(path).get("tests", []):
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else silent).add(case.get("alertname"))
    for name in alerts:
        if name not in fired:
            p.add(f"{name}: no promtool test where it fires")
        if name not in silent:
            p.add(f"{name}: no promtool test where it stays silent")
    return p.finish()


# ------------------------------------------------------------- alertmanager --


def _normalise_am(cfg: dict, url: str, cred: str) -> dict:
    for rcv in cfg.get("receivers", []):
        for wh in rcv.get("webhook_configs", []) or []:
            wh["url"] = url
            auth = (wh.get("http_config") or {}).get("authorization")
            if auth and "credentials_file" in auth:
                auth["credentials_file"] = cred
    return cfg


def check_am_drift() -> int:
    compose = load_yaml(os.path.join(DEPLOY, "alertmanager", "alertmanager.yml"))
    local = load_yaml(os.path.join(DEPLOY, "local", "alertmanager.yml"))
    a = _normalise_am(compose, "URL", "TOKEN")
    b = _normalise_am(local, "URL", "TOKEN")
    if a == b:
        return 0
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            print(f"`{key}` differs between deploy/alertmanager/alertmanager.yml and deploy/local/alertmanager.yml")
    return 1


def check_am_examples(out: str) -> int:
    """Writes the compose alertmanager.yml with the commented receiver
    examples switched on, for amtool to check."""
    lines = open(os.path.join(DEPLOY, "alertmanager", "alertmanager.yml"), encoding="utf-8").read().splitlines()
    result, in_default, found = [], False, 0
    for line in lines:
        if re.match(r"^  - name: ", line):
            in_default = line.strip() == "- name: default"
        m = re.match(r"^(    )# ?(.*)$", line) if in_default else None
        if m and re.match(r"\s*(-|\w+:)", m.group(2)):
            result.append(m.group(1) + m.group(2))
            found += 1
        else:
            result.append(line)
    if not found:
        print("no commented receiver examples under the `default` receiver")
        return 1
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(result) + "\n")
    return 0


# --------------------------------------------------------------- packaging --


def check_dockerfile() -> int:
    p = Problems()
    text = open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8").read()
    joined = re.sub(r"\\\n", " ", text)
    instr = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    froms = [ln for ln in instr if ln.upper().startswith("FROM ")]
    if not froms or not froms[0].split()[1].startswith("rust:1-bookworm"):
        p.add("build stage is not FROM rust:1-bookworm")
    if len(froms) < 2 or froms[-1].split()[1] != "debian:bookworm-slim":
        p.add("runtime stage is not FROM debian:bookworm-slim")
    if "cargo build --release --locked" not in joined:
        p.add("no `cargo build --release --locked`")
    users = [ln.split()[1] for ln in instr if ln.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        p.add("the runtime image does not switch to a non-root USER")
    if not any(ln.upper().startswith("HEALTHCHECK") and "127.0.0.1:9464/-/healthy" in ln for ln in instr):
        p.add("no HEALTHCHECK on http://127.0.0.1:9464/-/healthy")
    if not any(ln.upper().startswith("EXPOSE") and "9464" in ln for ln in instr):
        p.add("no EXPOSE 9464")
    cmd = [ln for ln in instr if ln.upper().startswith("CMD ")]
    if not cmd or json.loads(cmd[-1][4:]) != ["lookout", "run", "-c", "/etc/lookout/lookout.yaml"]:
        p.add("default CMD is not lookout run -c /etc/lookout/lookout.yaml")
    for ln in instr:
        if ln.upper().startswith(("COPY ", "ADD ")) and "--from=" not in ln:
            srcs = [s for s in ln.split()[1:-1] if not s.startswith("--")]
            for s in srcs:
                if s != "." and not glob.glob(os.path.join(ROOT, s)):
                    p.add(f"{ln}: {s} does not exist in the build context")
    ignore_path = os.path.join(ROOT, ".dockerignore")
    ignore = open(ignore_path).read().split() if os.path.isfile(ignore_path) else []
    for entry in ("target/", "data/", ".stack/", ".git/"):
        if entry not in ignore:
            p.add(f".dockerignore (at the repository root, the build context) does not exclude {entry}")
    return p.finish()


def check_listed(p: Problems, kdir: str, prefix: str = "") -> None:
    """Every manifest in `kdir` is in its kustomization, and nothing more."""
    k = load_yaml(os.path.join(kdir, "kustomization.yaml"))
    listed = set(k.get("resources", []))
    for r in listed:
        if not os.path.isfile(os.path.join(kdir, r)):
            p.add(f"{prefix}kustomization lists {r}, which does not exist")
    for f in glob.glob(os.path.join(kdir, "*.yaml")):
        name = os.path.basename(f)
        if name != "kustomization.yaml" and name not in listed:
            p.add(f"{prefix}{name} is not listed in kustomization.yaml")


def check_kustomization() -> int:
    p = Problems()
    kdir = os.path.join(DEPLOY, "kubernetes")
    check_listed(p, kdir)
    dep = load_yaml(os.path.join(kdir, "deployment.yaml"))
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    if (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") != "/-/healthy":
        p.add("liveness probe is not /-/healthy")
    if (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/-/ready":
        p.add("readiness probe is not /-/ready")
    if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
        p.add("pod securityContext lacks runAsNonRoot")
    if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
        p.add("container has no resource requests and limits")
    refs = [e for e in c.get("env", []) if "secretKeyRef" in (e.get("valueFrom") or {})]
    if not refs:
        p.add("no secretKeyRef: credentials must come from a Secret the site creates")
    for f in glob.glob(os.path.join(kdir, "*.yaml")):
        for doc in yaml.safe_load_all(open(f)):
            if doc and doc.get("kind") == "Secret":
                p.add(f"{os.path.basename(f)}: a Secret manifest is committed; create it with kubectl (README.md)")
    return p.finish()


def check_kustomization_replicas() -> int:
    """deploy/kubernetes/replicas: three replicas on PostgreSQL that no
    single pod's loss stops."""
    p = Problems()
    kdir = os.path.join(DEPLOY, "kubernetes", "replicas")
    check_listed(p, kdir, "replicas/")
    docs = [d for f in glob.glob(os.path.join(kdir, "*.yaml")) for d in yaml.safe_load_all(open(f)) if d]
    kinds = {d.get("kind"): d for d in docs}
    if "Secret" in kinds:
        p.add("replicas: a Secret manifest is committed; create it with kubectl (README.md)")
    dep = kinds.get("Deployment")
    if not dep:
        return p.add("replicas: no Deployment") or p.finish()
    if (dep["spec"].get("replicas") or 1) < 3:
        p.add("replicas: the Deployment runs fewer than three replicas")
    if (dep["spec"].get("strategy") or {}).get("type") == "Recreate":
        p.add("replicas: Recreate stops every replica at once; use RollingUpdate")
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    if (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/-/ready/relay":
        p.add("replicas: readiness must be /-/ready/relay (webhook intake is not held back by probes warming up)")
    if (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") != "/-/healthy":
        p.add("replicas: liveness probe is not /-/healthy")
    if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
        p.add("replicas: pod securityContext lacks runAsNonRoot")
    keys = {i.get("key") for v in spec.get("volumes", []) for i in ((v.get("secret") or {}).get("items") or [])}
    if "postgres-url" not in keys:
        p.add("replicas: the PostgreSQL URL must come from the Secret's postgres-url key, as a file")
    labels = dep["spec"]["selector"]["matchLabels"]
    pdb = kinds.get("PodDisruptionBudget")
    if not pdb:
        p.add("replicas: no PodDisruptionBudget")
    elif pdb["spec"].get("selector", {}).get("matchLabels") != labels:
        p.add("replicas: the PodDisruptionBudget does not select the Deployment's pods")
    cm = kinds.get("ConfigMap") or {}
    text = (cm.get("data") or {}).get("lookout.yaml", "")
    if "store:" not in text or "url_file:" not in text:
        p.add("replicas: the ConfigMap's lookout.yaml has no relay.store with url_file")
    return p.finish()


def extract_configmap_lookout(out: str, sub: str = "") -> int:
    cm = load_yaml(os.path.join(DEPLOY, "kubernetes", sub, "configmap.yaml"))
    text = (cm.get("data") or {}).get("lookout.yaml")
    if not text:
        print("configmap.yaml has no data.lookout.yaml")
        return 1
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    table = {
        "compose": lambda: check_compose(args[0], args[1]),
        "compose-schema": lambda: check_compose_schema(args[0], args[1]),
        "dashboard": check_dashboard,
        "grafana-provisioning": check_grafana_provisioning,
        "rules": check_rules,
        "am-drift": check_am_drift,
        "am-examples": lambda: check_am_examples(args[0]),
        "dockerfile": check_dockerfile,
        "kustomization": check_kustomization,
        "configmap-lookout": lambda: extract_configmap_lookout(args[0]),
        "kustomization-replicas": check_kustomization_replicas,
        "configmap-lookout-replicas": lambda: extract_configmap_lookout(args[0], "replicas"),
    }
    if cmd not in table:
        print(f"unknown check {cmd}\n{__doc__}")
        return 2
    return table[cmd]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
