"""Schemathesis hooks for the OpenAPI fuzz test (tests/openapi_fuzz.rs).

The served document says what any daemon accepts. Two things depend on the
host the daemon runs on, so the fuzzer's copy is narrowed to this one:

- which releases exist: a `version` is one the test's offline mirror holds
  (any other is refused with 400 `unknown_version`, which the fuzzer then
  checks as a negative case), and a `binary` is the real PocketBase binary
  the test names;
- `follow=true` on the logs (an instance's, a deploy's) keeps the answer
  open (for good, or while the deploy runs): those streams have tests of
  their own, so the parameter is left out here;
- backups are written where `to` says, on this host: the fuzzer's backups
  go to the test's own directory; and a backup schedule's `cron` is any
  cron expression, which no regex describes: the fuzzer picks from a few
  valid ones (invalid ones answer 400 `invalid_schedule`, tested on their
  own); a replication's `to` is a directory of that test's too, and a
  replica restore's `timestamp` one of a few valid times;
- a fleet file is TOML, which no JSON schema describes: the fuzzer plans
  and applies a few valid ones that declare nothing (a bad file answers
  400 `invalid_fleet_file`, tested on its own in tests/fleet.rs);
- a schema push restarts every instance it reaches (a failed migration
  takes seconds to be told from a crash loop): the fuzzer's pushes name
  instances and a tag that do not exist, so only the checks of the schema
  run (the rollout has tests of its own in tests/schema_push.rs);
- a deploy's repository is any URL git takes, which no regex describes:
  the fuzzer's deploys name one of a few (a closed port on loopback, so
  each deploy fails fast in the background) and make no instances.
"""

import os

import schemathesis

RELEASES = [v for v in os.environ.get("POCKESTRATOR_FUZZ_RELEASES", "").split(",") if v]
BINARY = os.environ.get("POCKESTRATOR_FUZZ_BINARY", "")
BACKUP_DIR = os.environ.get("POCKESTRATOR_FUZZ_BACKUP_DIR", "")


@schemathesis.hook
def before_load_schema(ctx, raw_schema):
    schemas = raw_schema.get("components", {}).get("schemas", {})
    for name in ("CreateInstance", "UpgradeInstance", "InstallVersion"):
        properties = schemas.get(name, {}).get("properties", {})
        if RELEASES and "version" in properties:
            properties["version"] = {"enum": RELEASES + [None]}
        if BINARY and "binary" in properties:
            properties["binary"] = {"enum": [BINARY, None]}
    for path in ("/api/v1/instances/{name}/logs", "/api/v1/instances/{name}/deploys/{deploy}/log"):
        logs = raw_schema.get("paths", {}).get(path, {}).get("get")
        if logs:
            logs["parameters"] = [p for p in logs.get("parameters", []) if p.get("name") != "follow"]
    for name in ("CreateBackup", "SetSchedule"):
        properties = schemas.get(name, {}).get("properties", {})
        if BACKUP_DIR and "to" in properties:
            properties["to"] = {"enum": [BACKUP_DIR, "file://" + BACKUP_DIR, None]}
    replication = schemas.get("SetReplication", {}).get("properties", {})
    if BACKUP_DIR and "to" in replication:
        # Litestream may be missing on the fuzzer's host (409); where it
        # is, it replicates into the test's own directory.
        replication["to"] = {"enum": [BACKUP_DIR + "/replica", "file://" + BACKUP_DIR + "/replica"]}
    # No regex knows which days each month has: a few valid times (an
    # impossible date answers 400, tested on its own).
    restore = schemas.get("RestoreReplica", {}).get("properties", {})
    if "timestamp" in restore:
        restore["timestamp"] = {"enum": ["2026-12-01T13:00:00Z", "2026-02-28T23:59:59.5+01:00", None]}
    for name in ("PlanFleet", "ApplyFleet"):
        fleet = schemas.get(name, {}).get("properties", {})
        if "file" in fleet:
            fleet["file"] = {"enum": ['fleet = "fuzz"\n', '# nothing declared\nfleet = "fuzz-other"\n']}
    push = schemas.get("PushSchema", {}).get("properties", {})
    if "to" in push:
        push["to"] = {"type": "array", "minItems": 1, "maxItems": 2,
                      "items": {"enum": ["fuzz-none-1", "fuzz-none-2"]}}
        push["all"] = {"enum": [False]}
        push["tag"] = {"enum": ["fuzz-none", None]}
    deploy = schemas.get("StartDeploy", {}).get("properties", {})
    if "repo" in deploy:
        deploy["repo"] = {"enum": ["https://127.0.0.1:9/app.git", "ssh://git@127.0.0.1:9/app.git", None]}
        deploy["branch"] = {"enum": ["main", "release/1.2", None]}
        deploy["subdir"] = {"enum": ["", "site/web", None]}
        deploy["create"] = {"enum": [False]}
    for body in ("CreateInstance", "UpdateInstance"):
        props = schemas.get(body, {}).get("properties", {})
        if "wake_schedule" in props:
            props["wake_schedule"] = {"enum": ["0 3 * * *", "*/30 * * * * *", None]}
    schedule = schemas.get("SetSchedule", {}).get("properties", {})
    if "cron" in schedule:
        schedule["cron"] = {"enum": ["0 3 * * *", "*/30 * * * * *", "15 4 * * MON"]}
