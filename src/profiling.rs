//! The metrics listener: `/metrics` (Prometheus text) and `/debug/pprof/profile?seconds=N`
//! (a CPU profile in pprof's protobuf format, for `go tool pprof` or `pprof`), the latter
//! behind `metrics.profiling`.

use crate::storage::Db;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use std::time::Duration;

/// What the metrics listener's handlers use.
pub struct MetricsState {
    pub db: Option<Db>,
    pub profiling: bool,
}

/// Mounts the metrics listener's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/debug/pprof/profile", web::get().to(profile));
}

async fn metrics(state: web::Data<MetricsState>) -> HttpResponse {
    if let Some(db) = &state.db {
        let (idle, in_use) = db.pool_status();
        crate::metrics::observe_db_pool(idle, in_use);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}

#[derive(Deserialize)]
struct ProfileParams {
    seconds: Option<u64>,
}

/// The longest profile one request may ask for.
const MAX_SECONDS: u64 = 300;

async fn profile(state: web::Data<MetricsState>, q: web::Query<ProfileParams>) -> HttpResponse {
    if !state.profiling {
        return HttpResponse::NotFound().body("profiling is disabled (metrics.profiling)");
    }
    let seconds = q.seconds.unwrap_or(30).clamp(1, MAX_SECONDS);
    let guard = match pprof::ProfilerGuardBuilder::default()
        .frequency(99)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
    {
        Ok(g) => g,
        // Only one profile can run at a time.
        Err(e) => return HttpResponse::Conflict().body(format!("cannot start profiler: {e}")),
    };
    actix_web::rt::time::sleep(Duration::from_secs(seconds)).await;
    let encoded = guard.report().build().and_then(|r| r.pprof()).map(|p| {
        use pprof::protos::Message;
        p.encode_to_vec()
    });
    match encoded {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header(("Content-Disposition", "attachment; filename=\"profile.pb\""))
            .body(bytes),
        Err(e) => {
            tracing::error!(error = %e, "building a CPU profile failed");
            HttpResponse::InternalServerError().body(format!("profile failed: {e}"))
        }
    }
}
