//! The dashboard's static files, built into the binary so that running the server needs
//! no Node.js. Until the dashboard (`web-ui/`) is built into it, `/` is a small page that
//! points to the API.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The embedded files: `(path, media type, content)`.
const FILES: &[(&str, &str, &[u8])] = &[("/index.html", "text/html; charset=utf-8", INDEX)];

const INDEX: &[u8] = br#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice</title></head>
<body>
<main>
<h1>Sluice</h1>
<p>The server is running. The dashboard is not built into this binary yet.</p>
<ul>
<li>REST API: <code>/v1</code>, described by <a href="v1/openapi.json"><code>/v1/openapi.json</code></a> (OpenAPI 3.1)</li>
<li>Prometheus figures: <code>/metrics</code></li>
<li>Health: <a href="healthz"><code>/healthz</code></a></li>
</ul>
</main>
</body>
</html>
"#;

/// Whether `path` is one of the dashboard's files (served without a token: they hold no
/// data; the API they call needs it).
pub fn is_asset_path(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/") || FILES.iter().any(|(p, _, _)| *p == path)
}

/// Serves an embedded file (`/` is `/index.html`).
pub async fn serve(uri: Uri) -> Response {
    let path = match uri.path() {
        "/" => "/index.html",
        p => p,
    };
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, media, body)) => ([(header::CONTENT_TYPE, *media)], *body).into_response(),
        None => crate::error::ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such file: {path}"),
        )
        .into_response(),
    }
}
