//! Per-request telemetry: a request id, a tracing span and one log line per request, and the
//! Prometheus counters and latency histograms behind `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::{code_for_status, error_response, payload_too_large};
use super::AppState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counters and latency histograms by route.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    next_id: AtomicU64,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_string()).or_default();
            for (c, &b) in h.counts.iter_mut().zip(&BUCKETS) {
                if seconds <= b {
                    *c += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// The Prometheus text exposition of everything recorded, plus the serving model's gauges.
    pub fn render(&self, model: Option<&ModelGauges<'_>>) -> String {
        let mut out = String::new();
        out.push_str("# HELP fmrecall_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE fmrecall_requests_total counter\n");
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        if let Ok(r) = self.requests.lock() {
            for ((route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "fmrecall_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
                if *status >= 400 {
                    *errors.entry(route.clone()).or_default() += n;
                }
            }
        }
        out.push_str("# HELP fmrecall_errors_total HTTP responses with status >= 400 by route.\n");
        out.push_str("# TYPE fmrecall_errors_total counter\n");
        for (route, n) in &errors {
            let _ = writeln!(out, "fmrecall_errors_total{{route=\"{route}\"}} {n}");
        }
        out.push_str("# HELP fmrecall_request_seconds Request latency by route.\n");
        out.push_str("# TYPE fmrecall_request_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                for (c, b) in h.counts.iter().zip(&BUCKETS) {
                    let _ = writeln!(
                        out,
                        "fmrecall_request_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {c}"
                    );
                }
                let _ = writeln!(
                    out,
                    "fmrecall_request_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "fmrecall_request_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "fmrecall_request_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP fmrecall_model_info The serving model (value 1).\n");
        out.push_str("# TYPE fmrecall_model_info gauge\n");
        out.push_str("# HELP fmrecall_index_items Items in the serving index.\n");
        out.push_str("# TYPE fmrecall_index_items gauge\n");
        if let Some(m) = model {
            let _ = writeln!(out, "fmrecall_model_info{{version=\"{}\"}} 1", m.version);
            let _ = writeln!(out, "fmrecall_index_items {}", m.items);
        }
        out.push_str(
            "# HELP fmrecall_index_searches_total Searches of the serving index by plan (graph, \
             filtered_graph, exact_scan, graph_then_exact; our graph only), since it was loaded.\n",
        );
        out.push_str("# TYPE fmrecall_index_searches_total counter\n");
        for (plan, n) in model.map_or(&[][..], |m| &m.plans[..]) {
            let _ = writeln!(out, "fmrecall_index_searches_total{{plan=\"{plan}\"}} {n}");
        }
        out
    }
}

/// What `/metrics` shows of the serving model.
pub struct ModelGauges<'a> {
    /// Model version.
    pub version: &'a str,
    /// Slots in its index.
    pub items: usize,
    /// Searches per plan (`index.params.plans`).
    pub plans: Vec<(String, u64)>,
}

/// A client's request id if it is short and printable, else a fresh one.
fn request_id(req: &Request, metrics: &Metrics) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| {
            format!(
                "req-{}",
                metrics.next_id.fetch_add(1, Ordering::Relaxed) + 1
            )
        })
}

/// Wraps every request: id, span, latency, metrics, and a JSON body for errors produced outside the
/// handlers (unknown route, body limit, timeout, load shedding); every 413 names the limit.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let id = request_id(&req, &state.metrics);
    let span = tracing::info_span!("request", id = %id, method = %req.method(), route = %route);
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        response = payload_too_large(state.settings.body_limit_bytes);
    } else if status.as_u16() >= 400 && !is_json {
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        response = error_response(status, code_for_status(status), message, None);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.record(&route, status.as_u16(), seconds);
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = seconds * 1e3,
            "request"
        );
    });
    response
}

/// `GET /metrics` body.
pub fn metrics_response(state: &AppState) -> Response {
    let model = state.live.current();
    let gauges = model.as_ref().map(|m| {
        let info = m.index_info();
        let plans = info.params["plans"]
            .as_object()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        ModelGauges {
            version: &m.meta().version,
            items: m.item_count(),
            plans,
        }
    });
    let body = state.metrics.render(gauges.as_ref());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}
