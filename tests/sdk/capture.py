"""Drives the real posthog-python SDK against a hogpipe server (used by hogpipe/tests/sdk.rs).

Environment:
  HOGPIPE_HOST        capture URL, e.g. http://127.0.0.1:PORT
  HOGPIPE_TOKEN       project token
  HOGPIPE_RUN         a name for this run, put in every distinct id
  HOGPIPE_GZIP        "1" to gzip upload bodies
  HOGPIPE_HISTORICAL  "1" to send as historical_migration
  HOGPIPE_BATCH       number of events in the bulk part (default 500)

Prints one JSON object per line on stdout: first {"config": {...}} with the SDK's effective
settings, then one line per event the SDK was asked to send: {"uuid", "event", "distinct_id",
"properties", "top"}, where "properties" are the properties this script gave (the SDK may add
its own "$..." properties) and "top" holds top-level fields of the event it must carry as given.
Exits 1 (after shutdown) if the SDK reported any upload error.
"""

import json
import os
import sys
import uuid as uuidlib

import posthog
from posthog import Posthog

HOST = os.environ["HOGPIPE_HOST"]
TOKEN = os.environ["HOGPIPE_TOKEN"]
RUN = os.environ.get("HOGPIPE_RUN", "py")
GZIP = os.environ.get("HOGPIPE_GZIP") == "1"
HISTORICAL = os.environ.get("HOGPIPE_HISTORICAL") == "1"
BATCH = int(os.environ.get("HOGPIPE_BATCH", "500"))

errors = []


def on_error(error, items):
    errors.append(f"{error!r} ({len(items)} events)")


client = Posthog(
    TOKEN,
    host=HOST,
    gzip=GZIP,
    historical_migration=HISTORICAL,
    on_error=on_error,
    flush_at=100,
    flush_interval=0.5,
    max_queue_size=100_000,
)


def emit(line):
    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")


emit(
    {
        "config": {
            "sdk": "posthog-python",
            "version": posthog.VERSION,
            "gzip": client.gzip,
            "historical_migration": client.historical_migration,
        }
    }
)


def sent(uuid, event, distinct_id, properties=None, top=None):
    if uuid is None:
        errors.append(f"the SDK dropped {event} for {distinct_id} (no uuid returned)")
        return
    emit(
        {
            "uuid": str(uuid),
            "event": event,
            "distinct_id": distinct_id,
            "properties": properties or {},
            "top": top or {},
        }
    )


def capture(event, distinct_id, properties, groups=None):
    event_uuid = str(uuidlib.uuid4())
    kwargs = {"distinct_id": distinct_id, "properties": properties, "uuid": event_uuid}
    if groups:
        kwargs["groups"] = groups
    got = client.capture(event, **kwargs)
    expected = dict(properties)
    if groups:
        expected["$groups"] = groups
    if got != event_uuid:
        errors.append(f"capture returned uuid {got!r}, {event_uuid} was given")
    sent(got, event, distinct_id, expected)


user = f"{RUN}-user-\u00e9\u00e8-\U0001f994"

# Single events: nesting, unicode, edge values.
capture(
    "nested properties",
    user,
    {
        "plan": "pro",
        "nested": {"a": {"b": {"c": [1, 2, {"d": None, "e": [True, False]}]}}, "empty": {}, "list": []},
        "deep": json.loads("[" * 40 + "]" * 40),
        "numbers": {"int": 42, "neg": -7, "big": 9007199254740993, "float": 3.25, "small": 1e-7, "zero": 0},
        "nothing": None,
        "yes": True,
        "": "empty key",
        "key.with.dots": "dots",
        "key with spaces and \u00fcml\u00e4uts": "k",
    },
)
capture(
    "unicode \u00e9v\u00e9nement \u4e8b\u4ef6 \U0001f680",
    user,
    {
        "emoji": "\U0001f994\U0001f680\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "cjk": "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
        "rtl": "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd",
        "combining": "e\u0301a\u0300",
        "escapes": "quote \" backslash \\ slash / newline \n tab \t cr \r nul \u0000 bell \u0007",
        "bom": "\ufeffstart",
        "line_sep": "a\u2028b\u2029c",
        "\U0001f511 key": "emoji key",
        "long": "\u00e9" * 5000,
    },
)
capture("$pageview", user, {"$current_url": "https://example.com/p?q=1&r=\u00e9#h", "$referrer": ""})
capture(
    "with groups",
    user,
    {"seat": 3},
    groups={"company": f"{RUN}-acme", "project": "p-\u00e9"},
)

# Person properties: $set / $set_once, the way the SDK sends them.
identified = f"{RUN}-identified"
anon = f"{RUN}-anon-{uuidlib.uuid4()}"
capture(
    "$identify",
    identified,
    {
        "$set": {"email": "max@example.com", "name": "Max \U0001f994", "tags": ["a", "b"]},
        "$set_once": {"first_seen": "2024-01-01T00:00:00Z", "initial": {"ref": "ads"}},
        "$anon_distinct_id": anon,
    },
)
set_props = {"plan": "enterprise", "seats": 12, "meta": {"k": [1, "\u00e9"]}}
sent(
    client.set(distinct_id=f"{RUN}-set", properties=set_props),
    "$set",
    f"{RUN}-set",
    top={"$set": set_props},
)
set_once_props = {"signup_source": "\u00e9-mail", "first": True}
sent(
    client.set_once(distinct_id=f"{RUN}-set-once", properties=set_once_props),
    "$set_once",
    f"{RUN}-set-once",
    top={"$set_once": set_once_props},
)

# Alias and group identify.
sent(
    client.alias(previous_id=f"{RUN}-old-id", distinct_id=f"{RUN}-new-id"),
    "$create_alias",
    f"{RUN}-old-id",
    {"distinct_id": f"{RUN}-old-id", "alias": f"{RUN}-new-id"},
)
group_props = {"name": "Acme \u00e9", "employees": 11, "address": {"city": "Z\u00fcrich"}}
sent(
    client.group_identify("company", f"{RUN}-acme", group_props, distinct_id=f"{RUN}-grouper"),
    "$groupidentify",
    f"{RUN}-grouper",
    {"$group_type": "company", "$group_key": f"{RUN}-acme", "$group_set": group_props},
)

# Many events: the SDK splits them into batches of flush_at.
for i in range(BATCH):
    capture(
        "bulk event",
        f"{RUN}-bulk-{i % 37}",
        {"i": i, "run": RUN, "payload": "x" * (i % 200), "tags": [i, str(i), {"n": i}]},
    )

client.flush()
client.shutdown()
sys.stdout.flush()
if errors:
    for e in errors:
        print(f"capture.py: SDK error: {e}", file=sys.stderr)
    sys.exit(1)
