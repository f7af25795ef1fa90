//! The one mapping from errors to HTTP answers: a status and
//! `{"error":{"code":…,"message":…}}`.

use crate::cluster::ClusterFailure;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::dto::{ErrorBody, ErrorDetail};
use crate::archive::ArchiveError;
use crate::destination::FailureKind;
use crate::manager::ManagerError;
use crate::model::ports::PortError;
use crate::pocketbase::PocketBaseError;
use crate::store::{CollectionsError, StoreError};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.clone(),
            message: self.message.clone(),
        }
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        let status = http_status(&e);
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        Self::new(status, code(&e), e.to_string())
    }
}

/// The HTTP status for a manager error.
pub fn http_status(e: &ManagerError) -> StatusCode {
    let code = match e {
        ManagerError::Name(_)
        | ManagerError::Version(_)
        | ManagerError::PocketBase(PocketBaseError::BadEmail(_))
        | ManagerError::PocketBase(PocketBaseError::ShortPassword)
        | ManagerError::PocketBase(PocketBaseError::LongPassword)
        | ManagerError::PocketBase(PocketBaseError::PasswordChars)
        | ManagerError::Limit(_)
        | ManagerError::Backup(_)
        | ManagerError::Schedule(_)
        | ManagerError::Idle(_)
        | ManagerError::Archive(
            ArchiveError::Unreadable { .. }
            | ArchiveError::Mismatch { .. }
            | ArchiveError::UnsafeMember { .. },
        )
        | ManagerError::Invalid(_)
        | ManagerError::Fleet { .. } => 400,
        ManagerError::StalePlan(_) => 409,
        ManagerError::Port(PortError::OutOfRange(_)) => 400,
        ManagerError::Collections(CollectionsError::Unreadable { .. }) => 500,
        ManagerError::Collections(_) => 409,
        ManagerError::Schema(_) => 422,
        ManagerError::Port(PortError::Exhausted { .. }) => 503,
        ManagerError::Port(_) => 409,
        ManagerError::NotFound(_) => 404,
        ManagerError::Conflict(_) => 409,
        ManagerError::Unauthorized(_) => 401,
        // The new version did not come up with this instance's data and the
        // old one runs again as before: the request conflicts with the
        // instance's state, nothing on the server is broken.
        ManagerError::UpgradeRolledBack { .. } => 409,
        ManagerError::Store(StoreError::NameTaken(_))
        | ManagerError::Store(StoreError::PortTaken(_))
        | ManagerError::Store(StoreError::UserTaken(_))
        | ManagerError::Store(StoreError::DomainTaken { .. }) => 409,
        ManagerError::Router(_) => 502,
        ManagerError::Destination(d) => match d.kind {
            FailureKind::Setup => 400,
            FailureKind::NotFound => 404,
            FailureKind::DiskFull => 507,
            FailureKind::Unreachable | FailureKind::Failed => 502,
        },
        ManagerError::Release(e) if e.is_user_error() => 400,
        ManagerError::Release(_) => 502,
        ManagerError::Cluster(c) => match c {
            ClusterFailure::HeldElsewhere { .. } | ClusterFailure::LeaseHeld { .. } => 409,
            ClusterFailure::NotClustered => 409,
            ClusterFailure::UnknownHost(_) => 404,
            ClusterFailure::TooLarge(_) => 413,
            ClusterFailure::Unreachable(_)
            | ClusterFailure::Refused(_)
            | ClusterFailure::NoAnswer(_) => 503,
        },
        _ => 500,
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A stable machine-readable code for a manager error.
pub fn code(e: &ManagerError) -> &'static str {
    match e {
        ManagerError::Name(_) => "invalid_name",
        ManagerError::Port(PortError::OutOfRange(_)) => "invalid_port",
        ManagerError::Port(PortError::Exhausted { .. }) => "no_free_port",
        ManagerError::Port(_) => "port_taken",
        ManagerError::Version(_) => "invalid_version",
        ManagerError::PocketBase(PocketBaseError::BadEmail(_)) => "invalid_email",
        ManagerError::PocketBase(PocketBaseError::ShortPassword)
        | ManagerError::PocketBase(PocketBaseError::LongPassword)
        | ManagerError::PocketBase(PocketBaseError::PasswordChars) => "invalid_password",
        ManagerError::PocketBase(_) => "pocketbase_error",
        ManagerError::Collections(CollectionsError::TooOld { .. }) => "pocketbase_too_old",
        ManagerError::Collections(_) => "schema_unreadable",
        ManagerError::Schema(_) => "invalid_schema",
        ManagerError::Invalid(_) | ManagerError::Limit(_) => "invalid_request",
        ManagerError::Backup(_) => "invalid_backup",
        ManagerError::Schedule(_) => "invalid_schedule",
        ManagerError::Idle(_) => "invalid_idle_timeout",
        ManagerError::Archive(ArchiveError::Io { .. }) => "io_error",
        ManagerError::Archive(_) => "invalid_archive",
        ManagerError::NotFound(_) => "not_found",
        ManagerError::Conflict(_) => "conflict",
        ManagerError::Fleet { .. } => "invalid_fleet_file",
        ManagerError::StalePlan(_) => "stale_plan",
        ManagerError::Unauthorized(_) => "unauthorized",
        ManagerError::Store(StoreError::NameTaken(_)) => "name_taken",
        ManagerError::Store(StoreError::PortTaken(_)) => "port_taken",
        ManagerError::Store(StoreError::UserTaken(_)) => "conflict",
        ManagerError::Store(StoreError::DomainTaken { .. }) => "domain_taken",
        ManagerError::Router(_) => "router_error",
        ManagerError::Destination(d) => match d.kind {
            FailureKind::Setup => "invalid_destination",
            FailureKind::NotFound => "not_found",
            FailureKind::DiskFull => "disk_full",
            FailureKind::Unreachable => "destination_unreachable",
            FailureKind::Failed => "destination_error",
        },
        ManagerError::Store(_) => "store_error",
        ManagerError::Cluster(c) => match c {
            ClusterFailure::HeldElsewhere { .. } => "name_taken",
            ClusterFailure::LeaseHeld { .. } => "held_elsewhere",
            ClusterFailure::NotClustered => "not_clustered",
            ClusterFailure::UnknownHost(_) => "unknown_host",
            ClusterFailure::TooLarge(_) => "too_large",
            ClusterFailure::Unreachable(_) | ClusterFailure::Refused(_) => "cluster_unavailable",
            ClusterFailure::NoAnswer(_) => "host_unavailable",
        },
        ManagerError::Release(e) if e.is_user_error() => "unknown_version",
        ManagerError::Release(_) => "release_unavailable",
        ManagerError::Runtime(_) => "runtime_error",
        ManagerError::StartFailed { .. } => "start_failed",
        ManagerError::UpgradeRolledBack { .. } => "upgrade_rolled_back",
        ManagerError::Internal(_) => "internal_error",
        ManagerError::Io { .. } => "io_error",
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query: {}", e.body_text()))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::bad_request(format!("invalid JSON body: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.detail(),
        };
        (self.status, Json(body)).into_response()
    }
}
