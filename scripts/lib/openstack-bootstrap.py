#!/usr/bin/python3
"""Creates what scripts/openstack.sh promises in a fresh (or existing) cloud, idempotently.

    openstack-bootstrap.py identity|resources CONFIG.json

identity (Keystone up): roles, projects, domains, users and role assignments, the service users
and the catalog (services and public/internal/admin endpoints, updated when a port changed).
resources (Nova and Glance up): flavors and the image `lifeboat-blank`.
Both write CONFIG's `ids_file`: shell assignments of the names and ids the tests read.
One process (and one Python start-up) per phase, plain REST through a keystoneauth session.
"""
import json
import os
import subprocess
import sys
import time

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

phase, config_path = sys.argv[1], sys.argv[2]
with open(config_path) as f:
    C = json.load(f)


def secret(name):
    with open(C["secrets"][name]) as f:
        return f.read().strip()


auth = v3.Password(auth_url=C["auth_url"], username="admin", password=secret("admin"),
                   project_name="admin", user_domain_id="default", project_domain_id="default")
S = ks_session.Session(auth=auth)


def call(method, service, path, body=None, ok=(200, 201, 202, 204), **kw):
    for attempt in range(30):
        try:
            r = S.request(path, method, json=body, raise_exc=False,
                          endpoint_filter={"service_type": service, "interface": "public",
                                           "region_name": C["region"]}, **kw)
        except Exception as e:  # uwsgi closes every connection; a service may still be starting
            if attempt == 29:
                raise
            time.sleep(1)
            continue
        if r.status_code in (502, 503) and attempt < 29:
            time.sleep(1)
            continue
        if r.status_code not in ok:
            sys.exit(f"{method} {service} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content and r.headers.get("Content-Type", "").startswith("application/json") else None


def ident(method, path, body=None, **kw):
    return call(method, "identity", path, body, **kw)


def find(kind, plural, name, **query):
    q = "&".join([f"name={name}"] + [f"{k}={v}" for k, v in query.items()])
    items = ident("GET", f"/{plural}?{q}")[plural]
    return items[0] if items else None


def ensure(kind, plural, name, extra=None, **query):
    found = find(kind, plural, name, **query)
    if found:
        return found
    body = {"name": name}
    body.update(extra or {})
    return ident("POST", f"/{plural}", {kind: body})[kind]


def grant(role, user, project):
    ident("PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{role['id']}")


def ensure_user(name, domain, password, project=None):
    user = find("user", "users", name, domain_id=domain["id"])
    body = {"name": name, "domain_id": domain["id"], "password": password, "enabled": True}
    if project:
        body["default_project_id"] = project["id"]
    if user:
        # The password file is the truth (a reset Keystone is never half-kept, but be sure).
        ident("PATCH", f"/users/{user['id']}", {"user": {"password": password}})
        return user
    return ident("POST", "/users", {"user": body})["user"]


def write_ids(values):
    with open(C["ids_file"] + ".tmp", "w") as f:
        for k, v in values.items():
            f.write(f"{k}={v}\n")
    os.rename(C["ids_file"] + ".tmp", C["ids_file"])


def read_ids():
    try:
        with open(C["ids_file"]) as f:
            return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except FileNotFoundError:
        return {}


def identity():
    default = ident("GET", "/domains/default")["domain"]
    roles = {r: ensure("role", "roles", r) for r in ("admin", "member", "reader", "service")}
    project = {}
    for name in ("admin", "service", "demo", "restore-target"):
        project[name] = ensure("project", "projects", name,
                               {"domain_id": "default", "description": f"Lifeboat test project {name}"},
                               domain_id="default")
    domain2 = ensure("domain", "domains", C["domain2"], {"description": "Lifeboat's second domain"})
    alice_project = ensure("project", "projects", "alice-project",
                           {"domain_id": domain2["id"], "description": "alice's project"},
                           domain_id=domain2["id"])

    admin = find("user", "users", "admin", domain_id="default")
    for name in ("admin", "demo", "restore-target"):
        grant(roles["admin"], admin, project[name])
    alice = ensure_user("alice", domain2, secret("alice"), alice_project)
    bob = ensure_user("bob", default, secret("bob"), project["demo"])
    carol = ensure_user("carol", default, secret("carol"), project["demo"])
    # bob may also restore into restore-target; carol (demo only) may not.
    for user, proj in ((alice, alice_project), (bob, project["demo"]), (carol, project["demo"]), (bob, project["restore-target"])):
        grant(roles["member"], user, proj)
        grant(roles["reader"], user, proj)

    # Service users: admin and service in the service project (Nova calls Cinder with the
    # `service` role; without it Cinder refuses a detach).
    for name in C["service_users"]:
        user = ensure_user(name, default, secret("service"), project["service"])
        grant(roles["admin"], user, project["service"])
        grant(roles["service"], user, project["service"])

    services = ident("GET", "/services")["services"]
    endpoints = ident("GET", "/endpoints")["endpoints"]
    for svc in C["catalog"]:
        found = [s for s in services if s["type"] == svc["type"]]
        if found:
            service = found[0]
        else:
            service = ident("POST", "/services", {"service": {
                "type": svc["type"], "name": svc["name"], "enabled": True}})["service"]
        for interface in ("public", "internal", "admin"):
            mine = [e for e in endpoints if e["service_id"] == service["id"] and e["interface"] == interface]
            if mine and mine[0]["url"] == svc["url"] and mine[0].get("region_id") == C["region"]:
                continue
            for e in mine:
                ident("DELETE", f"/endpoints/{e['id']}")
            ident("POST", "/endpoints", {"endpoint": {
                "service_id": service["id"], "interface": interface, "url": svc["url"],
                "region_id": C["region"], "enabled": True}})

    ids = read_ids()
    ids.update({
        "ADMIN_USER_ID": admin["id"], "ADMIN_PROJECT_ID": project["admin"]["id"],
        "SERVICE_PROJECT_ID": project["service"]["id"],
        "DEMO_PROJECT_ID": project["demo"]["id"],
        "RESTORE_PROJECT_ID": project["restore-target"]["id"],
        "DOMAIN2_ID": domain2["id"], "ALICE_USER_ID": alice["id"],
        "ALICE_PROJECT_ID": alice_project["id"],
        "BOB_USER_ID": bob["id"], "CAROL_USER_ID": carol["id"],
        "SERVICE_ROLE_ID": roles["service"]["id"], "MEMBER_ROLE_ID": roles["member"]["id"],
        "READER_ROLE_ID": roles["reader"]["id"],
    })
    write_ids(ids)


def resources():
    nova_hdr = {"headers": {"OpenStack-API-Version": "compute 2.55"}}
    flavors = call("GET", "compute", "/flavors", **nova_hdr)["flavors"]
    names = {f["name"] for f in flavors}
    for fl in C["flavors"]:
        if fl["name"] not in names:
            call("POST", "compute", "/flavors", {"flavor": {
                "name": fl["name"], "ram": fl["ram"], "vcpus": fl["vcpus"], "disk": fl["disk"],
                "id": fl["id"], "os-flavor-access:is_public": True}}, **nova_hdr)

    img = C["image"]
    images = call("GET", "image", f"/v2/images?name={img['name']}")["images"]
    image = None
    for i in images:
        if i["status"] == "active" and image is None:
            image = i
        else:  # an upload that did not finish (killed start): made again
            call("DELETE", "image", f"/v2/images/{i['id']}")
    if image is None:
        image = call("POST", "image", "/v2/images", {
            "name": img["name"], "disk_format": "raw", "container_format": "bare",
            "visibility": "public", "min_disk": 1, **img["properties"]})
        call("PUT", "image", f"/v2/images/{image['id']}/file", data=b"\0" * (img["size_mib"] << 20),
             headers={"Content-Type": "application/octet-stream"})
    ids = read_ids()
    ids["IMAGE_ID"] = image["id"]
    ids["FLAVOR_ID"] = C["flavors"][0]["id"]
    write_ids(ids)
    wait_for_compute_and_pool()


def poll(what, check, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.5)


def wait_for_compute_and_pool():
    host = C["compute_host"]

    def compute_up():
        services = call("GET", "compute", "/os-services?binary=nova-compute")["services"]
        return any(s["host"] == host and s["state"] == "up" and s["status"] == "enabled" for s in services)

    def provider():
        rps = call("GET", "placement", f"/resource_providers?name={host}")["resource_providers"]
        return bool(rps)

    def discovered():
        # Listed once the host is mapped to its cell (discover_hosts).
        hvs = call("GET", "compute", "/os-hypervisors")["hypervisors"]
        return any(h["hypervisor_hostname"] == host and h["state"] == "up" for h in hvs)

    def pool():
        pools = call("GET", "volumev3", "/scheduler-stats/get_pools?detail=true")["pools"]
        return any("@ceph" in p["name"] and p.get("capabilities", {}).get("total_capacity_gb") not in
                   (None, "unknown", 0) for p in pools)

    poll(f"nova-compute on {host}", compute_up)
    poll(f"{host}'s resource provider in Placement", provider)
    subprocess.run(C["discover_hosts"], check=True, stdout=subprocess.DEVNULL)
    poll(f"{host} in Nova's cell", discovered, 60)
    poll("cinder-volume's pool", pool)


{"identity": identity, "resources": resources}[phase]()
