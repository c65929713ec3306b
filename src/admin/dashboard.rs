//! `GET /`: the live operations dashboard. One static page built into the binary; its
//! script polls `/metrics` every second and draws throughput, approvals and declines by
//! channel, response codes, latency percentiles, ledger commits and connections.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

/// The page may talk to this origin only: no CDN, no fonts, no beacons, even if
/// someone edits the page carelessly.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

pub async fn page() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, CSP),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_nothing_from_elsewhere() {
        for external in ["http://", "https://", "//cdn", "<link", "src=\""] {
            assert!(!PAGE.contains(external), "dashboard refers to {external}");
        }
        for id in ["approved-total", "declined-total", "latency-p99", "chart"] {
            assert!(
                PAGE.contains(&format!("id=\"{id}\"")),
                "dashboard lacks #{id}"
            );
        }
    }
}
