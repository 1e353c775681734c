//! `/v1/operators`: upload (raw `application/wasm` body or a multipart form), list,
//! inspect and delete operator components.

use super::{AppState, blocking, content_type, read_body};
use crate::error::{ApiError, ApiResult};
use crate::store::OperatorInfo;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Name and version of a raw upload.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// The operator's name (with `version`, it can be named `name@version`).
    pub name: Option<String>,
    /// The operator's version.
    pub version: Option<String>,
    /// The uploaded file's name, used in error messages about it (a multipart upload
    /// gives it in its `file` part instead).
    pub filename: Option<String>,
}

/// A multipart upload.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The component (`.wasm`).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// The operator's name.
    pub name: Option<String>,
    /// The operator's version.
    pub version: Option<String>,
}

/// Reads a multipart form: its `file` part (required), `name` and `version`.
async fn read_form(
    mut form: Multipart,
) -> ApiResult<(Bytes, Option<String>, Option<String>, String)> {
    let (mut file, mut name, mut version, mut file_name) = (None, None, None, None);
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::from_rejection(
            e.status(),
            format!("reading the multipart form: {}", e.body_text()),
        )
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "file" => {
                file_name = field.file_name().map(String::from);
                file = Some(field.bytes().await.map_err(bad)?);
            }
            "name" => name = Some(field.text().await.map_err(bad)?),
            "version" => version = Some(field.text().await.map_err(bad)?),
            other => {
                return Err(ApiError::bad_request(
                    "bad_request",
                    format!("unknown form field '{other}': expected file, name and version"),
                ));
            }
        }
    }
    let file = file.ok_or_else(|| {
        ApiError::bad_request(
            "bad_request",
            "the form has no 'file' part: send the component as the 'file' field",
        )
    })?;
    let label = upload_label(file_name, name.as_deref(), version.as_deref());
    Ok((file, name, version, label))
}

/// What error messages call an uploaded component: its file name when the client gave
/// one, else `name@version` (or the name), else "the uploaded component".
fn upload_label(file_name: Option<String>, name: Option<&str>, version: Option<&str>) -> String {
    match (
        file_name.filter(|f| !f.is_empty()),
        name.filter(|n| !n.is_empty()),
        version,
    ) {
        (Some(f), _, _) => f,
        (None, Some(n), Some(v)) if !v.is_empty() => format!("{n}@{v}"),
        (None, Some(n), _) => n.to_string(),
        (None, None, _) => "the uploaded component".to_string(),
    }
}

/// Upload an operator component.
///
/// The body is the component itself (`application/wasm`, or `application/octet-stream`)
/// with `name` and `version` in the query, or a `multipart/form-data` form with a
/// `file` part and `name` and `version` fields. The component is checked against the
/// WIT world `sluice:operator/operator-world` and stored by its SHA-256. Uploading the
/// same component again answers 200 with what is stored.
#[utoipa::path(
    post,
    path = "/v1/operators",
    tag = "operators",
    params(UploadParams),
    request_body(
        description = "The component, raw or as a multipart form",
        content(
            (Vec<u8> = "application/wasm"),
            (UploadForm = "multipart/form-data"),
        )
    ),
    responses(
        (status = 201, description = "Stored", body = OperatorInfo),
        (status = 200, description = "Already stored", body = OperatorInfo),
        (status = 400, description = "A malformed form or query", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 409, description = "The name@version names other content, or the content another name", body = crate::error::ErrorBody),
        (status = 413, description = "Larger than the server's limit", body = crate::error::ErrorBody),
        (status = 415, description = "Neither application/wasm nor multipart/form-data", body = crate::error::ErrorBody),
        (status = 422, description = "Not an operator component (not WebAssembly, truncated, another world, ...)", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> ApiResult<(StatusCode, Json<OperatorInfo>)> {
    let limit = app.config.max_operator_bytes;
    let ct = content_type(request.headers());
    let (wasm, name, version, label) = if ct.starts_with("multipart/form-data") {
        // A form holds a little more than the component.
        let (parts, body) = request.into_parts();
        let body = read_body(body, limit + 64 * 1024, "operators (--max-operator-size)").await?;
        let request = Request::from_parts(parts, axum::body::Body::from(body));
        let form = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::from_rejection(e.status(), e.body_text()))?;
        read_form(form).await?
    } else if ct == "application/wasm" || ct == "application/octet-stream" {
        let query = Query::<UploadParams>::try_from_uri(request.uri())
            .map_err(|e| ApiError::bad_request("bad_request", e.body_text()))?
            .0;
        let body = read_body(
            request.into_body(),
            limit,
            "operators (--max-operator-size)",
        )
        .await?;
        let label = upload_label(
            query.filename,
            query.name.as_deref(),
            query.version.as_deref(),
        );
        (body, query.name, query.version, label)
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "an operator upload is application/wasm (the component as the body) or multipart/form-data (a 'file' part), not '{ct}'"
            ),
        ));
    };
    if wasm.len() > limit {
        return Err(too_large(limit));
    }
    let name = name.filter(|s| !s.is_empty());
    let version = version.filter(|s| !s.is_empty());
    let state = app.clone();
    let (info, created) = blocking(move || {
        let engine = state.engine.clone();
        let component = engine
            .inspect_operator(&label, &wasm)
            .map_err(|r| ApiError::unprocessable(r.code, r.message))?;
        state
            .store
            .put(&wasm, name, version, component, sluice_core::time::now_ms())
    })
    .await?;
    let mut info = info;
    info.jobs = app.jobs.jobs_using(&info.sha256);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the component is larger than this server's limit of {limit} bytes (sluice serve --max-operator-size)"
        ),
    )
}

/// List the stored operators.
#[utoipa::path(
    get,
    path = "/v1/operators",
    tag = "operators",
    responses(
        (status = 200, description = "Every operator", body = Vec<OperatorInfo>),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(app): State<Arc<AppState>>) -> Json<Vec<OperatorInfo>> {
    let mut list = app.store.list();
    for o in &mut list {
        o.jobs = app.jobs.jobs_using(&o.sha256);
    }
    Json(list)
}

fn find(app: &AppState, reference: &str) -> ApiResult<OperatorInfo> {
    let mut info = app.store.get(reference).ok_or_else(|| {
        ApiError::not_found(format!(
            "no operator '{reference}' (name one by its SHA-256 or as name@version)"
        ))
    })?;
    info.jobs = app.jobs.jobs_using(&info.sha256);
    Ok(info)
}

/// Inspect an operator: its world, exports, imports, size and the jobs that use it.
#[utoipa::path(
    get,
    path = "/v1/operators/{operator}",
    tag = "operators",
    params(("operator" = String, Path, description = "The SHA-256 (optionally `sha256:`-prefixed) or name@version")),
    responses(
        (status = 200, description = "The operator", body = OperatorInfo),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such operator", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(app): State<Arc<AppState>>,
    Path(reference): Path<String>,
) -> ApiResult<Json<OperatorInfo>> {
    find(&app, &reference).map(Json)
}

/// Delete an operator that no job uses.
#[utoipa::path(
    delete,
    path = "/v1/operators/{operator}",
    tag = "operators",
    params(("operator" = String, Path, description = "The SHA-256 or name@version")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such operator", body = crate::error::ErrorBody),
        (status = 409, description = "Jobs use it (delete them first)", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Path(reference): Path<String>,
) -> ApiResult<StatusCode> {
    let info = find(&app, &reference)?;
    if !info.jobs.is_empty() {
        return Err(ApiError::conflict(
            "in_use",
            format!(
                "operator {} is used by job(s) {}: delete those jobs first (DELETE /v1/jobs/{{id}})",
                info.sha256,
                info.jobs.join(", ")
            ),
        ));
    }
    app.store.delete(&info.sha256).map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}
