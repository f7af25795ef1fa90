//! The OpenAPI document of `/api/v1`, generated from the handlers' and the
//! wire types' annotations, served at `/api/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::backups as b;
use super::dto::*;
use super::instances as h;

#[derive(OpenApi)]
#[openapi(
    info(title = "Pockestrator API", description = "Run a fleet of PocketBase servers and keep them healthy. Over TCP every request needs `Authorization: Bearer <token>`; the local unix socket needs none."),
    paths(
        h::daemon_health, h::list_instances, h::create_instance, h::get_instance,
        h::update_instance, h::delete_instance, h::start_instance, h::stop_instance,
        h::restart_instance, h::upgrade_instance, h::set_superuser, h::instance_logs,
        h::instance_history, h::list_domains, h::add_domain, h::remove_domain, h::doctor,
        h::doctor_repair, h::tls_ask, h::import,
        h::list_versions, h::install_version, h::list_events, h::event_stream,
        b::list_backups, b::create_backup, b::delete_backup, b::restore_backup,
        b::get_schedule, b::set_schedule, b::delete_schedule,
    ),
    components(schemas(
        InstanceDto, CreateInstance, CreatedDto, SuperuserDto, UpdateInstance, UpgradeInstance,
        SetSuperuser, DeletedDto, InstanceList, LogLines, InstalledVersion, VersionList,
        InstallVersion, InstallProgress, EventList, ConfigChangeDto, ConfigHistory,
        RouteStatus, AddDomain, DomainList, DriftDto, DoctorReport, RepairDto, CheckDto, ImportRequest, ImportOutcomeDto, ImportReport, DaemonHealth, ErrorBody, ErrorDetail,
        EventDto, StreamEvent, DownloadDto, crate::model::Status,
        BackupDto, BackupList, CreateBackup, RestoreBackup, DeletedBackup,
        ScheduleDto, ScheduleState, SetSchedule,
    )),
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

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
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
                "/api/v1/doctor",
                "/api/v1/doctor/repair",
                "/api/v1/events",
                "/api/v1/events/stream",
                "/api/v1/health",
                "/api/v1/import",
                "/api/v1/instances",
                "/api/v1/instances/{name}",
                "/api/v1/instances/{name}/backup-schedule",
                "/api/v1/instances/{name}/backups",
                "/api/v1/instances/{name}/backups/{id}",
                "/api/v1/instances/{name}/backups/{id}/restore",
                "/api/v1/instances/{name}/domains",
                "/api/v1/instances/{name}/domains/{domain}",
                "/api/v1/instances/{name}/history",
                "/api/v1/instances/{name}/logs",
                "/api/v1/instances/{name}/restart",
                "/api/v1/instances/{name}/start",
                "/api/v1/instances/{name}/stop",
                "/api/v1/instances/{name}/superuser",
                "/api/v1/instances/{name}/upgrade",
                "/api/v1/tls/ask",
                "/api/v1/versions",
                "/api/v1/versions/install",
            ]
        "#]]
        .assert_debug_eq(&paths);
    }
}
