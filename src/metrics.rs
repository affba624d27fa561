//! Prometheus metrics of a node: HTTP requests by route, method and status; actor messages
//! by component, message and outcome; database pool use. Served on the metrics listener.
//!
//! The registry is process-wide, like the `prometheus` crate's own default: metrics are a
//! cross-cutting concern read only by `/metrics`, never by component logic.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    messages: IntCounterVec,
    message_latency: HistogramVec,
    db_connections: IntGaugeVec,
    consumer_positions: IntGaugeVec,
    consumer_stalled: IntGaugeVec,
    federation_queue: IntGauge,
    federation_transactions: IntCounterVec,
    federation_pdus: IntCounterVec,
}

const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new_custom(Some("myelin".into()), None).expect("registry");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("metric");
        let http_latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("metric");
        let messages = IntCounterVec::new(
            Opts::new(
                "actor_messages_total",
                "Actor messages by component, type and outcome",
            ),
            &["component", "message", "outcome"],
        )
        .expect("metric");
        let message_latency = HistogramVec::new(
            HistogramOpts::new(
                "actor_message_duration_seconds",
                "Actor message latency, as the caller sees it",
            )
            .buckets(BUCKETS.to_vec()),
            &["component", "message"],
        )
        .expect("metric");
        let db_connections = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )
        .expect("metric");
        let consumer_positions = IntGaugeVec::new(
            Opts::new(
                "bus_consumer_position",
                "Last stream position each consumer applied",
            ),
            &["consumer"],
        )
        .expect("metric");
        let consumer_stalled = IntGaugeVec::new(
            Opts::new(
                "bus_consumer_stalled",
                "1 when a consumer stopped at an output it cannot read",
            ),
            &["consumer"],
        )
        .expect("metric");
        let federation_queue = IntGauge::new(
            "federation_queue_items",
            "PDUs and EDUs queued for other servers, over every destination",
        )
        .expect("metric");
        let federation_transactions = IntCounterVec::new(
            Opts::new(
                "federation_transactions_total",
                "Outgoing federation transactions by outcome (sent, failed: retried later, \
                 dropped: refused by the destination)",
            ),
            &["outcome"],
        )
        .expect("metric");
        let federation_pdus = IntCounterVec::new(
            Opts::new(
                "federation_pdus_total",
                "PDUs in outgoing transactions by outcome (sent, dropped)",
            ),
            &["outcome"],
        )
        .expect("metric");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_latency.clone()),
            Box::new(messages.clone()),
            Box::new(message_latency.clone()),
            Box::new(db_connections.clone()),
            Box::new(consumer_positions.clone()),
            Box::new(consumer_stalled.clone()),
            Box::new(federation_queue.clone()),
            Box::new(federation_transactions.clone()),
            Box::new(federation_pdus.clone()),
        ] {
            registry.register(c).expect("register metric");
        }
        Metrics {
            registry,
            http_requests,
            http_latency,
            messages,
            message_latency,
            db_connections,
            consumer_positions,
            consumer_stalled,
            federation_queue,
            federation_transactions,
            federation_pdus,
        }
    }
}

/// Counts one HTTP request. `route` is the matched route pattern, never the raw path, so the
/// label set stays bounded.
pub fn observe_http(route: &str, method: &str, status: u16, elapsed: Duration) {
    let m = &*METRICS;
    m.http_requests
        .with_label_values(&[route, method, &status.to_string()])
        .inc();
    m.http_latency
        .with_label_values(&[route, method])
        .observe(elapsed.as_secs_f64());
}

/// Counts one actor message, as sent through a component handle.
pub fn observe_message(component: &str, message: &str, ok: bool, elapsed: Duration) {
    let m = &*METRICS;
    m.messages
        .with_label_values(&[component, message, if ok { "ok" } else { "error" }])
        .inc();
    m.message_latency
        .with_label_values(&[component, message])
        .observe(elapsed.as_secs_f64());
}

/// Records the database pool's idle and in-use connection counts.
pub fn observe_db_pool(idle: usize, in_use: usize) {
    let m = &*METRICS;
    m.db_connections
        .with_label_values(&["idle"])
        .set(idle as i64);
    m.db_connections
        .with_label_values(&["in_use"])
        .set(in_use as i64);
}

/// Records the last position a bus consumer applied.
pub fn observe_consumer(consumer: &str, position: i64) {
    METRICS
        .consumer_positions
        .with_label_values(&[consumer])
        .set(position);
}

/// The text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    let families = METRICS.registry.gather();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Records whether a bus consumer stopped at an output it cannot read.
pub fn observe_consumer_stalled(consumer: &str, stalled: bool) {
    METRICS
        .consumer_stalled
        .with_label_values(&[consumer])
        .set(i64::from(stalled));
}

/// Records how many PDUs and EDUs wait in the federation queues.
pub fn observe_federation_queue(items: i64) {
    METRICS.federation_queue.set(items);
}

/// Counts one outgoing federation transaction attempt: `outcome` is `sent`, `failed` (to be
/// retried) or `dropped` (refused by the destination); `pdus` the PDUs it carried.
pub fn observe_federation_transaction(outcome: &str, pdus: u64) {
    METRICS
        .federation_transactions
        .with_label_values(&[outcome])
        .inc();
    if outcome != "failed" {
        METRICS
            .federation_pdus
            .with_label_values(&[outcome])
            .inc_by(pdus);
    }
}
