"""The shared state of the fake virsh and virtsnap: one JSON file named by
$FAKE_STATE, holding the domains, the snapshots and every call made."""
import json
import os


def load():
    with open(os.environ["FAKE_STATE"]) as f:
        return json.load(f)


def save(state):
    tmp = os.environ["FAKE_STATE"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, os.environ["FAKE_STATE"])
