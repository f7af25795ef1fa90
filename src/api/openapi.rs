//! The OpenAPI document of `/api/v1` and seed 001's API, generated from the
//! handlers' and the wire types' annotations, served at
//! `/api/v1/openapi.json`.
//!
//! The annotations say what each handler answers when all goes well; what
//! every handler shares is added here, in one place, so no operation can
//! forget it: the bearer requirement and its 401, the 400 of a malformed
//! request, the 500 of a failed store or runtime, each with the error body
//! of its API. The input rules of `crate::model` (names, domains, versions,
//! e-mail addresses, limits) are put on the fields and parameters they
//! govern, with the rules that tie fields together (`version` or `binary`,
//! a password only with an e-mail), so that a request the document allows
//! is one the server accepts, and the other way round.

use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::backups as b;
use super::compat as c;
use super::deploys as d;
use super::dto::patterns;
use super::dto::*;
use super::instances as h;
use super::schema as s;

#[derive(OpenApi)]
#[openapi(
    info(title = "Pockestrator API", description = "Run a fleet of PocketBase servers and keep them healthy. Over TCP every request needs `Authorization: Bearer <token>` (`pockestrator token` prints it), except `/api/v1/tls/ask`; the local unix socket needs none. Errors of `/api/v1` are `ErrorBody`; those of seed 001's per-user API (tag `seed-001`) are its own `CompatFailure`."),
    paths(
        h::daemon_health, h::list_instances, h::create_instance, h::get_instance,
        h::update_instance, h::delete_instance, h::start_instance, h::stop_instance,
        h::restart_instance, h::sleep_instance, h::upgrade_instance, h::set_superuser, h::instance_logs,
        h::instance_history, h::list_domains, h::add_domain, h::remove_domain, h::doctor,
        h::doctor_repair, h::tls_ask, h::import,
        h::list_versions, h::install_version, h::list_events, h::event_stream,
        b::list_backups, b::create_backup, b::delete_backup, b::restore_backup,
        b::get_schedule, b::set_schedule, b::delete_schedule,
        b::set_replication, b::delete_replication, b::restore_replica,
        d::start_deploy, d::list_deploys, d::get_deploy, d::deploy_log, d::start_rollback,
        d::set_webhook, d::delete_webhook, d::set_credentials,
        c::init_pb, c::pb_status, c::stop_pb, c::pb_instances, c::health,
        h::move_instance, super::cluster::list_hosts, super::cluster::drain_host,
        super::cluster::undrain_host,
        super::fleet::plan, super::fleet::apply, super::fleet::export, super::fleet::push_schema,
        super::fleet::tunnel_config,
        s::instance_schema, s::instance_openapi, s::instance_types,
    ),
    components(schemas(
        InstanceDto, CreateInstance, CreatedDto, SuperuserDto, UpdateInstance, UpgradeInstance,
        SetSuperuser, DeletedDto, InstanceList, LogLines, InstalledVersion, VersionList,
        InstallVersion, InstallProgress, EventList, ConfigChangeDto, ConfigHistory,
        RouteStatus, AddDomain, DomainList, DriftDto, DoctorReport, RepairDto, CheckDto, ImportRequest, ImportOutcomeDto, ImportReport, DaemonHealth, ErrorBody, ErrorDetail,
        EventDto, StreamEvent, DownloadDto, crate::model::Status,
        BackupDto, BackupList, CreateBackup, RestoreBackup, DeletedBackup,
        ScheduleDto, ScheduleState, SetSchedule, ReplicaDto, SetReplication, RestoreReplica,
        StartDeploy, DeployDto, DeployList, StartRollback, WebhookDto, DeployCredentials,
        HeldInstance, HostDto, HostList, UnreachableHost, MoveInstance, MovedDto, DrainDto,
        MovedTo, LeftBehind,
        PlanFleet, ApplyFleet, FieldChangeDto, ChangeDto, PlanDto, AppliedDto, ApplyDto, ExportDto,
        PushSchema, PushCollection, PushField, PushedDto, PushReportDto, TunnelDto,
        SchemaFile, InstanceOpenApi,
        c::InitRequest, c::InitResponse, c::StatusResponse, c::StopResponse, c::InstancesResponse,
        c::HealthResponse, c::UserInstance, c::UserInstanceSummary, c::CompatFailure,
    )),
    tags(
        (name = "cluster", description = "The hosts of a cluster (`serve --cluster`). In a cluster, `/api/v1/instances` lists every host's instances and a request about an instance another host holds is answered by that host (header `x-pockestrator-host`)."),
        (name = "fleet", description = "Fleet as code: a TOML file of instances, planned and applied (`pockestrator plan|apply|export`)."),
        (name = "schema", description = "Schema as code: an instance's collections read from its own data.db (read-only, no credentials), its OpenAPI document and its TypeScript types."),
        (name = "seed-001", description = "Seed 001's per-user API, unchanged: one PocketBase per user id, with that API's shapes, states and error body."),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Operations that need no token: Caddy asks them and cannot send one.
const PUBLIC_OPERATIONS: &[&str] = &["/api/v1/tls/ask"];

/// Patterns of path parameters, by name.
const PATH_PATTERNS: &[(&str, &str)] = &[
    ("name", patterns::INSTANCE_NAME),
    ("domain", patterns::DOMAIN),
    ("user_id", patterns::USER_ID),
    ("id", patterns::BACKUP_ID),
    ("deploy", patterns::DEPLOY_ID),
];

/// Patterns of request body fields: (schema, field, pattern).
const FIELD_PATTERNS: &[(&str, &str, &str)] = &[
    ("CreateInstance", "name", patterns::INSTANCE_NAME),
    ("CreateInstance", "version", patterns::VERSION),
    ("CreateInstance", "binary", patterns::ABSOLUTE_PATH),
    ("CreateInstance", "domain", patterns::DOMAIN),
    ("CreateInstance", "superuser_email", patterns::EMAIL),
    ("CreateInstance", "superuser_password", patterns::PASSWORD),
    ("CreateInstance", "memory_max", patterns::MEMORY_MAX),
    ("CreateInstance", "cpu_quota", patterns::CPU_QUOTA),
    ("CreateInstance", "host", patterns::LABEL),
    ("CreateInstance", "region", patterns::LABEL),
    ("MoveInstance", "to", patterns::LABEL),
    ("PushSchema", "tag", patterns::LABEL),
    ("UpdateInstance", "domain", patterns::DOMAIN),
    ("UpdateInstance", "memory_max", patterns::MEMORY_MAX),
    ("UpdateInstance", "cpu_quota", patterns::CPU_QUOTA),
    ("UpgradeInstance", "version", patterns::VERSION),
    ("UpgradeInstance", "binary", patterns::ABSOLUTE_PATH),
    ("InstallVersion", "version", patterns::VERSION),
    ("InstallVersion", "binary", patterns::ABSOLUTE_PATH),
    ("SetSuperuser", "email", patterns::EMAIL),
    ("SetSuperuser", "password", patterns::PASSWORD),
    ("AddDomain", "domain", patterns::DOMAIN),
    ("CreateBackup", "to", patterns::BACKUP_DESTINATION),
    ("RestoreBackup", "as", patterns::INSTANCE_NAME),
    ("SetSchedule", "to", patterns::BACKUP_DESTINATION),
    ("SetReplication", "to", patterns::REPLICA_TARGET),
    ("RestoreReplica", "as", patterns::INSTANCE_NAME),
    ("RestoreReplica", "timestamp", patterns::TIMESTAMP),
    ("StartRollback", "to", patterns::COMMIT_PREFIX),
    ("DeployCredentials", "token", patterns::TOKEN),
    ("StartDeploy", "token", patterns::TOKEN),
    ("DeployCredentials", "ssh_key", patterns::SSH_KEY),
    ("StartDeploy", "ssh_key", patterns::SSH_KEY),
];

/// Bodies that refuse unknown fields (`#[serde(deny_unknown_fields)]`).
const CLOSED_BODIES: &[&str] = &[
    "CreateInstance",
    "UpdateInstance",
    "UpgradeInstance",
    "SetSuperuser",
    "InstallVersion",
    "AddDomain",
    "ImportRequest",
    "CreateBackup",
    "RestoreBackup",
    "SetSchedule",
    "SetReplication",
    "MoveInstance",
    "RestoreReplica",
    "StartDeploy",
    "StartRollback",
    "DeployCredentials",
    "PlanFleet",
    "ApplyFleet",
    "PushSchema",
];

/// The document as served: the generated one with the shared answers and
/// the input rules added.
pub fn document_value() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    refine(&mut doc);
    doc
}

pub async fn document() -> Json<Value> {
    Json(document_value())
}

/// Links from seed 001's `init_pb` to the operations on the same user, so
/// that a client (and a stateful fuzzer) can follow a user from its start.
fn user_links() -> Value {
    let same_user = json!({"user_id": "$request.path.user_id"});
    json!({
        "PbStatus": {"operationId": "pb_status", "parameters": same_user},
        "StopPb": {"operationId": "stop_pb", "parameters": same_user},
    })
}

fn refine(doc: &mut Value) {
    if let Some(ok) = doc
        .pointer_mut("/paths/~1api~1users~1{user_id}~1init_pb/post/responses/200")
        .and_then(Value::as_object_mut)
    {
        ok.insert("links".into(), user_links());
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                refine_operation(path, op);
            }
        }
    }
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    // A retention that keeps nothing is refused: not all four counts 0.
    if let Some(set) = schemas
        .get_mut("SetSchedule")
        .and_then(Value::as_object_mut)
    {
        let zero = json!({"const": 0});
        set.insert(
            "not".into(),
            json!({
                "required": ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"],
                "properties": {
                    "keep_last": zero, "keep_daily": zero,
                    "keep_weekly": zero, "keep_monthly": zero,
                },
            }),
        );
    }
    for (schema, field, pattern) in FIELD_PATTERNS {
        if let Some(prop) = schemas
            .get_mut(*schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
            .and_then(Value::as_object_mut)
        {
            prop.insert("pattern".into(), json!(pattern));
        }
    }
    if let Some(items) = schemas
        .get_mut("ImportRequest")
        .and_then(|s| s.pointer_mut("/properties/unit_dirs/items"))
        .and_then(Value::as_object_mut)
    {
        items.insert("pattern".into(), json!(patterns::ABSOLUTE_PATH));
    }
    if let Some(items) = schemas
        .get_mut("CreateInstance")
        .and_then(|s| s.pointer_mut("/properties/tags/items"))
        .and_then(Value::as_object_mut)
    {
        items.insert("pattern".into(), json!(patterns::LABEL));
    }
    if let Some(items) = schemas
        .get_mut("PushSchema")
        .and_then(|s| s.pointer_mut("/properties/to/items"))
        .and_then(Value::as_object_mut)
    {
        items.insert("pattern".into(), json!(patterns::INSTANCE_NAME));
    }
    for name in CLOSED_BODIES {
        if let Some(s) = schemas.get_mut(*name).and_then(Value::as_object_mut) {
            s.insert("additionalProperties".into(), json!(false));
        }
    }
    // The rules between fields. A `null` field counts as absent, as serde
    // reads it, so "given" means "a string".
    let given = |fields: &[&str]| {
        let properties: Map<String, Value> = fields
            .iter()
            .map(|f| (f.to_string(), json!({"type": "string"})))
            .collect();
        json!({"required": fields, "properties": properties})
    };
    let not_both = json!({"not": given(&["version", "binary"])});
    let rules = [
        (
            "CreateInstance",
            json!([
                not_both,
                {"anyOf": [{"not": given(&["superuser_password"])}, given(&["superuser_email"])]},
            ]),
        ),
        (
            "UpgradeInstance",
            json!([not_both, {"anyOf": [given(&["version"]), given(&["binary"])]}]),
        ),
        ("InstallVersion", json!([not_both])),
        (
            "PushSchema",
            json!([{"oneOf": [
                {"required": ["to"], "properties": {"to": {"type": "array", "minItems": 1}}},
                {"required": ["all"], "properties": {"all": {"const": true}}},
                given(&["tag"]),
            ]}]),
        ),
        (
            "DeployCredentials",
            json!([{"anyOf": [given(&["token"]), given(&["ssh_key"])]}]),
        ),
    ];
    refine_push_schema(schemas);
    for (name, all_of) in rules {
        if let Some(s) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            s.insert("allOf".into(), all_of);
        }
    }
}

/// What `schema push` checks of a collection and its fields, as
/// `model::collections::parse_collections` does; a system collection is
/// PocketBase's own and never pushed.
fn refine_push_schema(schemas: &mut Map<String, Value>) {
    use crate::model::collections::{FIELD_TYPES, TOKEN_OPTIONS};
    if let Some(p) = schemas
        .get_mut("PushCollection")
        .and_then(|s| s.get_mut("properties"))
        .and_then(Value::as_object_mut)
    {
        p.insert(
            "system".into(),
            json!({"type": ["boolean", "null"], "enum": [false, null]}),
        );
        p.insert(
            "type".into(),
            json!({"type": "string", "enum": ["base", "auth", "view"]}),
        );
        for rule in [
            "listRule",
            "viewRule",
            "createRule",
            "updateRule",
            "deleteRule",
        ] {
            p.insert(rule.into(), json!({"type": ["string", "null"]}));
        }
        p.insert(
            "indexes".into(),
            json!({"type": ["array", "null"], "items": {"type": "string"}}),
        );
        for token in TOKEN_OPTIONS {
            p.insert(
                token.into(),
                json!({"type": "object", "properties": {"secret": {"type": "string", "minLength": 30}}}),
            );
        }
    }
    if let Some(c) = schemas
        .get_mut("PushCollection")
        .and_then(Value::as_object_mut)
    {
        c.insert(
            "allOf".into(),
            json!([{"if": {"properties": {"type": {"const": "view"}}},
                    "then": {"required": ["viewQuery"], "properties": {"viewQuery": {"type": "string", "minLength": 1}}}}]),
        );
    }
    if let Some(field) = schemas.get_mut("PushField").and_then(Value::as_object_mut) {
        if let Some(p) = field.get_mut("properties").and_then(Value::as_object_mut) {
            p.insert(
                "type".into(),
                json!({"type": "string", "enum": FIELD_TYPES}),
            );
            for flag in ["system", "hidden", "presentable", "required"] {
                p.insert(flag.into(), json!({"type": ["boolean", "null"]}));
            }
        }
        field.insert(
            "allOf".into(),
            json!([
                {"if": {"properties": {"type": {"const": "select"}}},
                 "then": {"required": ["values"], "properties": {"values": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}}}},
                {"if": {"properties": {"type": {"const": "relation"}}},
                 "then": {"required": ["collectionId"], "properties": {"collectionId": {"type": "string", "minLength": 1}}}},
            ]),
        );
    }
}

fn refine_operation(path: &str, op: &mut Map<String, Value>) {
    let public = PUBLIC_OPERATIONS.contains(&path);
    if public {
        op.insert("security".into(), json!([]));
    }
    let compat = super::compat::is_compat_path(path);
    let error = if compat {
        json!({"$ref": "#/components/schemas/CompatFailure"})
    } else {
        json!({"$ref": "#/components/schemas/ErrorBody"})
    };
    let takes_input = op.contains_key("requestBody")
        || op
            .get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for param in params.iter_mut().filter_map(Value::as_object_mut) {
            if param.get("in") != Some(&json!("path")) {
                continue;
            }
            let name = param.get("name").and_then(Value::as_str).unwrap_or("");
            let pattern = PATH_PATTERNS.iter().find(|(n, _)| *n == name);
            if let (Some((_, pattern)), Some(schema)) = (
                pattern,
                param.get_mut("schema").and_then(Value::as_object_mut),
            ) {
                schema.insert("pattern".into(), json!(pattern));
            }
        }
    }
    let mut shared = Vec::new();
    if takes_input {
        shared.push((
            "400",
            "the request is malformed or breaks an input rule; `message` says which and what to do",
        ));
    }
    if !public {
        shared.push((
            "401",
            "no bearer token, or a wrong one (TCP only; the unix socket needs none)",
        ));
        shared.push((
            "500",
            "the daemon failed (its state database, the runtime, PocketBase); the daemon's log says more",
        ));
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, description) in shared {
        responses.entry(status).or_insert_with(|| {
            json!({
                "description": description,
                "content": {"application/json": {"schema": error.clone()}},
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route() {
        let doc = ApiDoc::openapi();
        let mut paths: Vec<_> = doc.paths.paths.keys().cloned().collect();
        paths.sort();
        expect_test::expect![[r#"
            [
                "/api/pb_instances",
                "/api/users/{user_id}/init_pb",
                "/api/users/{user_id}/pb_status",
                "/api/users/{user_id}/stop_pb",
                "/api/v1/doctor",
                "/api/v1/doctor/repair",
                "/api/v1/events",
                "/api/v1/events/stream",
                "/api/v1/fleet/apply",
                "/api/v1/fleet/export",
                "/api/v1/fleet/plan",
                "/api/v1/health",
                "/api/v1/hosts",
                "/api/v1/hosts/{name}/drain",
                "/api/v1/hosts/{name}/undrain",
                "/api/v1/import",
                "/api/v1/instances",
                "/api/v1/instances/{name}",
                "/api/v1/instances/{name}/backup-schedule",
                "/api/v1/instances/{name}/backups",
                "/api/v1/instances/{name}/backups/{id}",
                "/api/v1/instances/{name}/backups/{id}/restore",
                "/api/v1/instances/{name}/deploy-credentials",
                "/api/v1/instances/{name}/deploys",
                "/api/v1/instances/{name}/deploys/{deploy}",
                "/api/v1/instances/{name}/deploys/{deploy}/log",
                "/api/v1/instances/{name}/domains",
                "/api/v1/instances/{name}/domains/{domain}",
                "/api/v1/instances/{name}/history",
                "/api/v1/instances/{name}/logs",
                "/api/v1/instances/{name}/move",
                "/api/v1/instances/{name}/openapi.json",
                "/api/v1/instances/{name}/replication",
                "/api/v1/instances/{name}/replication/restore",
                "/api/v1/instances/{name}/restart",
                "/api/v1/instances/{name}/rollback",
                "/api/v1/instances/{name}/schema",
                "/api/v1/instances/{name}/sleep",
                "/api/v1/instances/{name}/start",
                "/api/v1/instances/{name}/stop",
                "/api/v1/instances/{name}/superuser",
                "/api/v1/instances/{name}/types",
                "/api/v1/instances/{name}/upgrade",
                "/api/v1/instances/{name}/webhook",
                "/api/v1/schema/push",
                "/api/v1/tls/ask",
                "/api/v1/tunnel/config",
                "/api/v1/versions",
                "/api/v1/versions/install",
                "/health/pb",
            ]
        "#]]
        .assert_debug_eq(&paths);
    }

    /// Every operation but Caddy's question needs the token and says what
    /// a missing one answers, in the error body of its own API.
    #[test]
    fn every_operation_declares_its_security_and_its_401() {
        let doc = document_value();
        assert_eq!(doc["security"], json!([{"bearer": []}]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"],
            json!({"type": "http", "scheme": "bearer"})
        );
        let mut seen = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let unauthorized =
                    &op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"];
                let shown = if op.get("security") == Some(&json!([])) {
                    assert!(unauthorized.is_null(), "{method} {path}");
                    "public".to_string()
                } else {
                    unauthorized.as_str().unwrap_or("none").to_string()
                };
                if path.starts_with("/api/v1/") && shown != "public" {
                    assert_eq!(shown, "#/components/schemas/ErrorBody", "{method} {path}");
                    continue;
                }
                seen.push(format!("{method} {path}: {shown}"));
            }
        }
        seen.sort();
        expect_test::expect![[r#"
            [
                "get /api/pb_instances: #/components/schemas/CompatFailure",
                "get /api/users/{user_id}/pb_status: #/components/schemas/CompatFailure",
                "get /api/v1/tls/ask: public",
                "get /health/pb: #/components/schemas/CompatFailure",
                "post /api/users/{user_id}/init_pb: #/components/schemas/CompatFailure",
                "post /api/users/{user_id}/stop_pb: #/components/schemas/CompatFailure",
            ]
        "#]]
        .assert_debug_eq(&seen);
    }

    #[test]
    fn input_rules_are_in_the_document() {
        let doc = document_value();
        let create = &doc["components"]["schemas"]["CreateInstance"];
        assert_eq!(
            create["properties"]["name"]["pattern"],
            patterns::INSTANCE_NAME
        );
        assert_eq!(create["properties"]["port"]["minimum"], 1024);
        assert_eq!(create["properties"]["port"]["maximum"], 65535);
        assert_eq!(create["additionalProperties"], false);
        assert!(create["allOf"].is_array());
        let init = &doc["paths"]["/api/users/{user_id}/init_pb"]["post"];
        assert_eq!(
            init["responses"]["200"]["links"]["StopPb"]["operationId"],
            "stop_pb"
        );
        let start = &doc["paths"]["/api/v1/instances/{name}/start"]["post"];
        assert_eq!(
            start["parameters"][0]["schema"]["pattern"],
            patterns::INSTANCE_NAME
        );
    }
}
