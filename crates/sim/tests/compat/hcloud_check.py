"""The official hcloud client against the fake Hetzner Cloud.

Usage: hcloud_check.py <endpoint> <token>. Creates servers with labels and user data, lists them
by label selector, waits for running, powers off, rebuilds, powers on and deletes; reads server
types, prices and their deprecation per location; creates an SSH key and finds it by fingerprint.
Exits non-zero on any mismatch.
"""

import base64
import datetime
import hashlib
import sys
import warnings

from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


def main(endpoint, token):
    client = Client(token=token, api_endpoint=endpoint, poll_interval=0.05)

    # Catalogue: types, per-location prices, images, locations.
    types = {t.name: t for t in client.server_types.get_all()}
    for name in ["cx23", "cx33", "cx43", "cx53", "cpx12", "cpx22", "cpx32", "cpx42", "cpx52", "cpx62",
                 "cax11", "cax21", "cax31", "cax41", "ccx13"]:
        check(name in types, f"server type {name} listed")
    cx23 = client.server_types.get_by_name("cx23")
    check(cx23.cores == 2 and cx23.architecture == "x86", "cx23 has 2 x86 cores")
    prices = {p["location"]: p for p in cx23.prices}
    net = float(prices["fsn1"]["price_hourly"]["net"])
    gross = float(prices["fsn1"]["price_hourly"]["gross"])
    check(net > 0 and abs(gross - net * 1.19) < 1e-9, f"cx23 in fsn1 costs {net} net, {gross} gross per hour")
    check(types["cax41"].architecture == "arm", "cax41 is arm")
    check({loc.location.name for loc in cx23.locations} == {"fsn1", "nbg1", "hel1"}, "cx23 sold in the EU only")
    check(all(loc.deprecation is None and loc.available for loc in cx23.locations), "cx23 is not deprecated")
    check(client.server_types.get_by_id(cx23.id).name == "cx23", "server type by id")

    # Deprecations, per location as the API reports them since 2025-09-24.
    retired = datetime.datetime(2025, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)
    cx22 = types["cx22"]
    check(all(loc.deprecation is not None and loc.deprecation.unavailable_after == retired
              and not loc.available for loc in cx22.locations), "cx22 unavailable after 2025-12-31 everywhere")
    check(all(loc.deprecation.announced < loc.deprecation.unavailable_after for loc in cx22.locations),
          "cx22's deprecation was announced before it took effect")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        check(cx22.deprecated is True and cx22.deprecation.unavailable_after == retired,
              "the older top-level deprecation fields agree")
        check(types["cpx21"].deprecated is False and types["cpx21"].deprecation is None,
              "cpx21 is not deprecated everywhere")
    cpx21 = {loc.location.name: loc for loc in types["cpx21"].locations}
    check(cpx21["nbg1"].deprecation is not None and not cpx21["nbg1"].available, "cpx21 retired in nbg1")
    check(cpx21["ash"].deprecation is None and cpx21["ash"].available, "cpx21 still sold in ash")
    try:
        client.servers.create(name="retired", server_type=ServerType(name="cx22"), image=Image(name="ubuntu-24.04"),
                              location=Location(name="fsn1"))
        check(False, "a retired type is refused")
    except APIException as e:
        check(e.code == "invalid_input" and "deprecated" in e.message, f"a retired type is refused: {e.message}")
    try:
        client.servers.create(name="elsewhere", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
                              location=Location(name="ash"))
        check(False, "a type is refused where it is not sold")
    except APIException as e:
        check(e.code == "invalid_input", f"a type is refused where it is not sold: {e.message}")
    arm = client.images.get_by_name_and_architecture("ubuntu-24.04", "arm")
    check(arm is not None and arm.architecture == "arm", "arm image by name and architecture")
    locations = [loc.name for loc in client.locations.get_all()]
    check(locations == ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"], f"locations {locations}")

    # SSH keys: create, then find by the MD5 fingerprint computed here.
    blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + bytes(range(32))).decode()
    public_key = f"ssh-ed25519 {blob} mayfly@test"
    key = client.ssh_keys.create(name="mayfly-key", public_key=public_key, labels={"mayfly": "compat"})
    fingerprint = ":".join(f"{b:02x}" for b in hashlib.md5(base64.b64decode(blob)).digest())
    check(key.fingerprint == fingerprint, "fingerprint is the MD5 of the key blob")
    found = client.ssh_keys.get_by_fingerprint(fingerprint)
    check(found is not None and found.id == key.id, "SSH key found by fingerprint")
    try:
        client.ssh_keys.create(name="again", public_key=public_key)
        check(False, "a duplicate key is refused")
    except APIException as e:
        check(e.code == "uniqueness_error", "a duplicate key is refused with uniqueness_error")

    # Servers: create with labels and user data, list by label, wait for running.
    created = []
    for i in range(3):
        r = client.servers.create(
            name=f"compat-{i}",
            server_type=ServerType(name="cx23"),
            image=Image(name="ubuntu-24.04"),
            location=Location(name="fsn1"),
            labels={"mayfly": "compat", "slot": str(i)},
            user_data=f"#cloud-config\n# job {i}\n",
            ssh_keys=[key],
        )
        check(r.server.name == f"compat-{i}" and r.server.status == "initializing", f"compat-{i} created")
        check(r.server.public_net.ipv4 is not None and r.server.public_net.ipv4.ip, "server has an IPv4 address")
        check(r.root_password is None, "no root password with an SSH key")
        r.action.wait_until_finished()
        for a in r.next_actions:
            a.wait_until_finished()
        created.append(r.server)
    try:
        client.servers.create(name="compat-0", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"))
        check(False, "a duplicate name is refused")
    except APIException as e:
        check(e.code == "uniqueness_error", "a duplicate name is refused with uniqueness_error")

    listed = client.servers.get_all(label_selector="mayfly=compat")
    check(sorted(s.name for s in listed) == ["compat-0", "compat-1", "compat-2"], "three servers listed by label")
    check(all(s.status == "running" for s in listed), "all running after the create actions")
    check(all(s.labels["mayfly"] == "compat" for s in listed), "labels round-trip")
    check(all(s.server_type.name == "cx23" and s.location.name == "fsn1" for s in listed), "type and location round-trip")
    check(len(client.servers.get_all(label_selector="mayfly=compat,slot in (0,2)")) == 2, "set-based selector")
    page = client.servers.get_list(label_selector="mayfly=compat", page=1, per_page=2)
    check(len(page.servers) == 2 and page.meta.pagination.next_page == 2, "pagination meta")
    check(client.servers.get_by_name("compat-1").id == created[1].id, "server by name")

    # Power off, rebuild, power on, delete.
    server = client.servers.get_by_id(created[0].id)
    server.power_off().wait_until_finished()
    server.reload()
    check(server.status == "off", "powered off")
    check(len(client.servers.get_all(status=["off"])) == 1, "list by status")
    rebuilt = server.rebuild(Image(name="debian-12"))
    rebuilt.action.wait_until_finished()
    server.reload()
    check(server.status == "running" and server.image.name == "debian-12", "rebuilt onto debian-12 and running")
    server.power_off().wait_until_finished()
    server.power_on().wait_until_finished()
    server.reload()
    check(server.status == "running", "powered on again")
    server.update(labels={"mayfly": "compat", "slot": "0", "recycled": "yes"})
    check(client.servers.get_all(label_selector="recycled")[0].id == server.id, "labels updated")

    for s in listed:
        s.delete().wait_until_finished()
    check(client.servers.get_all(label_selector="mayfly=compat") == [], "all deleted")
    try:
        client.servers.get_by_id(created[0].id)
        check(False, "a deleted server is gone")
    except APIException as e:
        check(e.code == "not_found", "a deleted server answers not_found")
    print("hcloud compatibility: all checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: hcloud_check.py <endpoint> <token>")
    main(sys.argv[1], sys.argv[2])
