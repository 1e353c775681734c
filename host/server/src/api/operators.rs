//! `/v1/operators`: upload, list, inspect and delete operator components.

use super::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::store::{OperatorMeta, PutError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Name and version of an upload (query parameters of a raw upload; form fields
/// `name` and `version` of a multipart one).
#[derive(Debug, Deserialize, IntoParams)]
pub struct UploadParams {
    /// The operator's name (letters, digits, `-`, `_`, `.`).
    name: Option<String>,
    /// Its version (default `1`).
    version: Option<String>,
}

/// An operator and the jobs that use it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorView {
    /// The operator.
    #[serde(flatten)]
    pub operator: OperatorMeta,
    /// Ids of the jobs that use it.
    pub used_by: Vec<String>,
}

fn check_label(what: &str, v: &str) -> Result<(), ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} '{v}' is not valid: use 1 to 128 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// The upload's bytes and labels, from a raw `application/wasm` (or
/// `application/octet-stream`) body or a `multipart/form-data` one (a `file` part and
/// optional `name` and `version` fields).
async fn read_upload(
    state: &AppState,
    params: UploadParams,
    request: Request,
) -> Result<(Vec<u8>, Option<String>, Option<String>), ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the upload is larger than the limit of {} bytes (sluice serve --max-upload)",
                state.max_upload
            ),
        )
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence {
        "application/wasm" | "application/octet-stream" => {
            let bytes = Bytes::from_request(request, &())
                .await
                .map_err(|_| too_large())?;
            Ok((bytes.to_vec(), params.name, params.version))
        }
        "multipart/form-data" => {
            let mut form = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?;
            let (mut file, mut name, mut version) = (None, params.name, params.version);
            loop {
                let field = match form.next_field().await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        return Err(too_large());
                    }
                    Err(e) => return Err(ApiError::bad_request(format!("multipart body: {e}"))),
                };
                let field_name = field.name().unwrap_or("").to_string();
                let data = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        too_large()
                    } else {
                        ApiError::bad_request(format!("multipart field '{field_name}': {e}"))
                    }
                })?;
                let text = || String::from_utf8_lossy(&data).trim().to_string();
                match field_name.as_str() {
                    "file" => file = Some(data.to_vec()),
                    "name" => name = Some(text()),
                    "version" => version = Some(text()),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unknown multipart field '{other}' (use file, name, version)"
                        )));
                    }
                }
            }
            let file =
                file.ok_or_else(|| ApiError::bad_request("the multipart body has no 'file' part"))?;
            Ok((file, name, version))
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type '{content_type}' is not accepted: send the component as application/wasm or as the 'file' part of multipart/form-data"
            ),
        )),
    }
}

/// Uploads an operator component, validated against the operator world and stored by
/// content hash.
#[utoipa::path(
    post, path = "/v1/operators", tag = "operators",
    params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component (or multipart/form-data with a `file` part)"),
    responses(
        (status = 201, description = "Stored", body = OperatorMeta),
        (status = 200, description = "The same component was stored before under this name and version", body = OperatorMeta),
        (status = 400, description = "Not a valid name or version, or a bad multipart body", body = ErrorBody),
        (status = 409, description = "name@version exists with other content", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit", body = ErrorBody),
        (status = 415, description = "Another content type", body = ErrorBody),
        (status = 422, description = "Not a component of the operator world", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    Query(params): Query<UploadParams>,
    request: Request,
) -> Result<(StatusCode, Json<OperatorMeta>), ApiError> {
    let (bytes, name, version) = read_upload(&state, params, request).await?;
    let name =
        name.ok_or_else(|| ApiError::bad_request("the operator needs a name (?name=...)"))?;
    let version = version.unwrap_or_else(|| "1".to_string());
    check_label("name", &name)?;
    check_label("version", &version)?;
    let engine = state.engine.clone();
    let label = format!("{name}@{version}");
    let info = {
        let (label, bytes) = (label.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || engine.inspect_component(&label, &bytes))
            .await
            .map_err(|e| ApiError::internal(format!("validating the component: {e}")))?
    }
    .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_component", m))?;
    match state.operators.put(&bytes, &name, &version, info) {
        Ok((meta, true)) => Ok((StatusCode::CREATED, Json(meta))),
        Ok((meta, false)) => Ok((StatusCode::OK, Json(meta))),
        Err(PutError::Taken(m)) => Err(ApiError::conflict(m)),
        Err(PutError::Io(m)) => Err(ApiError::internal(m)),
    }
}

/// Lists the stored operators.
#[utoipa::path(get, path = "/v1/operators", tag = "operators",
    responses((status = 200, description = "Every operator", body = Vec<OperatorView>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<OperatorView>> {
    Json(
        state
            .operators
            .list()
            .into_iter()
            .map(|operator| OperatorView {
                used_by: state.jobs.using(&operator.hash),
                operator,
            })
            .collect(),
    )
}

fn find(state: &AppState, reference: &str) -> Result<OperatorMeta, ApiError> {
    state.operators.find(reference).ok_or_else(|| {
        ApiError::not_found(format!(
            "no operator '{reference}' (name it by its sha256 or as name@version)"
        ))
    })
}

/// One operator: its world, imports and exports, size, and the jobs that use it.
#[utoipa::path(get, path = "/v1/operators/{reference}", tag = "operators",
    params(("reference" = String, Path, description = "sha256 or name@version")),
    responses((status = 200, body = OperatorView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Json<OperatorView>, ApiError> {
    let operator = find(&state, &reference)?;
    Ok(Json(OperatorView {
        used_by: state.jobs.using(&operator.hash),
        operator,
    }))
}

/// Deletes an operator that no job uses.
#[utoipa::path(delete, path = "/v1/operators/{reference}", tag = "operators",
    params(("reference" = String, Path, description = "sha256 or name@version")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Jobs use it", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    let operator = find(&state, &reference)?;
    let used = state.jobs.using(&operator.hash);
    if !used.is_empty() {
        return Err(ApiError::conflict(format!(
            "operator {}@{} is used by job(s) {}: delete them first",
            operator.name,
            operator.version,
            used.join(", ")
        )));
    }
    state
        .operators
        .delete(&operator.hash)
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}
