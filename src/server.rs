//! Starting a node: database and migrations, the components that run here, handles to those
//! that run elsewhere, and the listeners (client and federation, metrics, internal).

use crate::actors::bridge::{Handle, HttpBridge};
use crate::actors::executors::Executors;
use crate::actors::federationapi::{self, FederationApiConfig};
use crate::actors::roomserver;
use crate::actors::syncapi;
use crate::actors::userapi::{self, UserApiConfig};
use crate::bus::Bus;
use crate::config::{Config, Placement};
use crate::routing::error::MatrixError;
use crate::routing::{client, AppState};
use crate::signing_key::SigningKey;
use crate::storage::{self, Db};
use actix::Actor;
use actix_web::dev::{ServerHandle, Service};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::future::{ready, Either, FutureExt};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] storage::StorageError),
    #[error("userapi: {0}")]
    UserApi(#[from] userapi::UserApiError),
    #[error("signing key: {0}")]
    SigningKey(#[from] crate::signing_key::SigningKeyError),
    #[error("config: {0}")]
    Config(String),
    #[error("cannot listen on {addr} ({key}): {error}")]
    Listen {
        key: &'static str,
        addr: String,
        error: std::io::Error,
    },
}

/// A running node. Listener addresses are the bound ones (port 0 picks a free port).
pub struct Node {
    /// The client listener (`server.listen`), which serves federation too.
    pub client_addr: SocketAddr,
    /// The plain-HTTP client listener (`server.http_listen`), if any.
    pub http_addr: Option<SocketAddr>,
    /// The federation-only listener (`federation.listen`), if any.
    pub federation_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub internal_addr: Option<SocketAddr>,
    servers: Vec<ServerHandle>,
    /// The threads of this node's actors (none on a node that hosts no component).
    exec: Option<Executors>,
}

/// What a listener serves.
#[derive(Clone, Copy)]
enum Routes {
    /// The client API and the federation API (`server.listen`).
    All,
    /// The federation API (`federation.listen`).
    Federation,
    /// The client API (`server.http_listen`).
    Client,
}

fn bind(key: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|error| StartError::Listen {
        key,
        addr: addr.to_owned(),
        error,
    })
}

/// The TLS setup of the HTTPS listeners: the PEM certificate chain and key in the files
/// `server.tls_cert` and `server.tls_key`, rustls with the ring provider, HTTP/1.1.
fn server_tls(cert: &str, key: &str) -> Result<rustls::ServerConfig, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| StartError::Config(format!("{what}: {e}"));
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&format!("server.tls_cert {cert}"), &e))?;
    if chain.is_empty() {
        return Err(StartError::Config(format!(
            "server.tls_cert {cert}: no PEM certificate in it"
        )));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&format!("server.tls_key {key}"), &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("TLS", &e))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| bad("server.tls_cert / server.tls_key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// CORS headers of every client API response (the spec asks for these exact values).
fn add_cors(headers: &mut actix_web::http::header::HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization"),
    );
}

impl Node {
    /// Starts every part of the node this config asks for. Call inside an actix system.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        let config = Arc::new(config);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = if config.server.workers == 0 {
            cores
        } else {
            config.server.workers
        };

        // Only a node hosting a component needs the database.
        let userapi_here = config.userapi_placement() == Placement::Local;
        let roomserver_here = config.roomserver_placement() == Placement::Local;
        let syncapi_here = config.syncapi_placement() == Placement::Local;
        let federationapi_here = config.federationapi_placement() == Placement::Local;
        let any_here = userapi_here || roomserver_here || syncapi_here || federationapi_here;
        let db = if any_here {
            let url = config.database_url();
            let db = Db::connect_with(
                &url,
                config.database.pool_size,
                std::time::Duration::from_millis(config.database.pool_timeout_ms.max(1)),
            )
            .await?;
            storage::migrate(&db).await?;
            tracing::info!(backend = %db.backend(), "database ready");
            Some(db)
        } else {
            None
        };
        let local_db = || {
            db.clone().ok_or_else(|| {
                StartError::Database(storage::StorageError::Config("no database".into()))
            })
        };
        let bus = Bus::new();
        // The components' actors spread over these threads (not the system thread).
        let exec = if any_here {
            let threads = match config.server.actor_threads {
                0 => cores,
                n => n,
            };
            let exec = Executors::start(threads);
            if let Some(db) = &db {
                db.shard(exec.shards(), config.database.pool_size);
            }
            Some(exec)
        } else {
            None
        };
        let local_exec = || exec.clone().expect("executors of a node with a component");
        // One denylist for every outbound call of this node (federation, identity servers).
        let denylist = Arc::new(config.ip_denylist());
        // The signing key, for the components that sign (events, keys, requests).
        let signing_key = if roomserver_here || federationapi_here {
            Some(Arc::new(SigningKey::load_or_generate(
                &config.server.data_dir,
            )?))
        } else {
            None
        };
        let server_name = ruma::OwnedServerName::try_from(config.server.name.as_str())
            .map_err(|e| StartError::Config(e.to_string()))?;

        let (userapi, userapi_local) = match config.userapi_placement() {
            Placement::Local => {
                let addr = userapi::start(
                    local_db()?,
                    bus.clone(),
                    &UserApiConfig {
                        server_name: config.server.name.clone(),
                        access_token_lifetime_ms: config.auth.access_token_lifetime_ms,
                        hasher_threads: config.auth.hasher_threads,
                        argon2_memory_kib: config.auth.argon2_memory_kib,
                        argon2_iterations: config.auth.argon2_iterations,
                    },
                    &local_exec(),
                )
                .await?;
                (Handle::Local(addr.clone()), Some(addr))
            }
            Placement::Remote(url) => (
                Handle::Remote(HttpBridge::new(&url, &config.components.internal_secret).start()),
                None,
            ),
        };

        // The roomserver's keyring: the federationapi, attached once both have started.
        let keyring = roomserver::keyring::Keyring::default();
        let (roomserver, roomserver_local) = match config.roomserver_placement() {
            Placement::Local => {
                let addr = roomserver::start(
                    roomserver::input::Deps {
                        db: local_db()?,
                        bus: bus.clone(),
                        key: signing_key
                            .clone()
                            .ok_or_else(|| StartError::Config("no signing key".into()))?,
                        server_name: server_name.clone(),
                        default_room_version: config.rooms.default_version.clone(),
                        keyring: keyring.clone(),
                    },
                    &local_exec(),
                );
                (Handle::Local(addr.clone()), Some(addr))
            }
            Placement::Remote(url) => (
                Handle::Remote(HttpBridge::new(&url, &config.components.internal_secret).start()),
                None,
            ),
        };

        // The syncapi follows the roomserver's and userapi's streams on the embedded bus, so
        // a local one runs beside them (the config checks this).
        let (syncapi, syncapi_local) = match config.syncapi_placement() {
            Placement::Local => {
                let addr = syncapi::start(
                    local_db()?,
                    bus.clone(),
                    &local_exec(),
                    Some(roomserver.clone()),
                )
                .await?;
                (Handle::Local(addr.clone()), Some(addr))
            }
            Placement::Remote(url) => (
                Handle::Remote(HttpBridge::new(&url, &config.components.internal_secret).start()),
                None,
            ),
        };

        let (federationapi, federationapi_local) = match config.federationapi_placement() {
            Placement::Local => {
                let f = &config.federation;
                if !f.verify_tls {
                    tracing::warn!(
                        "federation.verify_tls is false: other servers' TLS certificates are \
                         NOT verified; for tests only"
                    );
                }
                for (name, url) in &f.test_destinations {
                    tracing::warn!(
                        server = %name,
                        url = %url,
                        "federation.test_destinations replaces server discovery (tests only)"
                    );
                }
                let key = signing_key
                    .clone()
                    .ok_or_else(|| StartError::Config("no signing key".into()))?;
                let client = crate::federation::client::FederationClient::new(
                    crate::federation::client::ClientSettings {
                        server_name: server_name.clone(),
                        key: key.clone(),
                        denylist: denylist.clone(),
                        verify_tls: f.verify_tls,
                        ca_file: f.ca_file.clone(),
                        connect_timeout: f.connect_timeout,
                        request_timeout: f.request_timeout,
                        max_response_bytes: f.max_response_bytes,
                        test_destinations: f.test_destinations.clone(),
                    },
                )
                .map_err(StartError::Config)?;
                let addr = federationapi::start(
                    local_db()?,
                    bus.clone(),
                    roomserver.clone(),
                    syncapi.clone(),
                    userapi.clone(),
                    FederationApiConfig {
                        server_name: server_name.clone(),
                        key,
                        client,
                        key_validity: f.key_validity,
                        old_keys: f.old_signing_keys.clone(),
                        notaries: f.trusted_key_servers.clone(),
                        retry: federationapi::sender::RetryPolicy {
                            min: f.retry_min_interval,
                            multiplier: f.retry_multiplier,
                            max: f.retry_max_interval,
                            catch_up_after: f.catch_up_after,
                        },
                        default_room_version: config.rooms.default_version.clone(),
                    },
                    &local_exec(),
                )
                .await?;
                (Handle::Local(addr.clone()), Some(addr))
            }
            Placement::Remote(url) => (
                Handle::Remote(HttpBridge::new(&url, &config.components.internal_secret).start()),
                None,
            ),
        };

        keyring.attach(federationapi.clone());

        // Pruning: the outbox behind its consumers, redacted events' original content.
        if let Some(db) = &db {
            actix_web::rt::spawn(crate::bus::run_pruner(
                db.clone(),
                config.bus.outbox_retention,
            ));
            if roomserver_local.is_some() {
                actix_web::rt::spawn(roomserver::retention::run(
                    db.clone(),
                    config.rooms.redaction_retention,
                ));
            }
        }

        let mut servers = Vec::new();

        // Internal listener: this node's components, for the other nodes' bridges.
        let hosts_any = userapi_local.is_some()
            || roomserver_local.is_some()
            || syncapi_local.is_some()
            || federationapi_local.is_some();
        let listen = config.components.internal_listen.as_str();
        let internal_addr = if hosts_any && !listen.is_empty() {
            let listener = bind("components.internal_listen", listen)?;
            let bound = listener.local_addr().ok();
            let secret: Arc<str> = config.components.internal_secret.as_str().into();
            // A message is a client's request with some wrapping: twice the client limit.
            let body_limit = config
                .server
                .max_request_bytes
                .saturating_mul(2)
                .max(1024 * 1024);
            let server = HttpServer::new(move || {
                let (u, r, s, f) = (
                    userapi_local.clone(),
                    roomserver_local.clone(),
                    syncapi_local.clone(),
                    federationapi_local.clone(),
                );
                let secret = secret.clone();
                App::new()
                    .app_data(web::PayloadConfig::new(body_limit))
                    // Every caller proves it is one of the deployment's nodes before its body
                    // is read.
                    .wrap_fn(move |req, srv| {
                        if crate::actors::bridge::authorized(&req, &secret) {
                            return Either::Right(srv.call(req));
                        }
                        tracing::warn!(
                            path = %req.path(),
                            peer = ?req.peer_addr(),
                            "internal request without the deployment's secret refused"
                        );
                        let res = HttpResponse::Unauthorized().json(serde_json::json!({
                            "errcode": "M_UNAUTHORIZED",
                            "error": "Missing or wrong components.internal_secret",
                        }));
                        Either::Left(ready(Ok(req.into_response(res))))
                    })
                    .configure(move |cfg| {
                        if let Some(addr) = u {
                            userapi::serve_remote(cfg, addr);
                        }
                        if let Some(addr) = r {
                            roomserver::serve_remote(cfg, addr);
                        }
                        if let Some(addr) = s {
                            syncapi::serve_remote(cfg, addr);
                        }
                        if let Some(addr) = f {
                            federationapi::serve_remote(cfg, addr);
                        }
                    })
            })
            .workers(workers)
            .disable_signals()
            .listen(listener)
            .map_err(|error| StartError::Listen {
                key: "components.internal_listen",
                addr: listen.into(),
                error,
            })?
            .run();
            servers.push(server.handle());
            actix_web::rt::spawn(server);
            bound
        } else {
            None
        };

        // Metrics listener.
        let metrics_addr = if config.metrics.listen.is_empty() {
            None
        } else {
            let listener = bind("metrics.listen", &config.metrics.listen)?;
            let bound = listener.local_addr().ok();
            let state = web::Data::new(crate::profiling::MetricsState {
                db: db.clone(),
                profiling: config.metrics.profiling,
            });
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .configure(crate::profiling::configure)
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .map_err(|error| StartError::Listen {
                key: "metrics.listen",
                addr: config.metrics.listen.clone(),
                error,
            })?
            .run();
            servers.push(server.handle());
            actix_web::rt::spawn(server);
            bound
        };

        // Client listener.
        let listener = bind("server.listen", &config.server.listen)?;
        let client_addr = listener.local_addr().map_err(|error| StartError::Listen {
            key: "server.listen",
            addr: config.server.listen.clone(),
            error,
        })?;
        let state = web::Data::new(AppState::new(
            config.clone(),
            userapi,
            roomserver,
            syncapi,
            federationapi,
            denylist,
        ));
        // One app for every listener: the client listener serves every route, the federation
        // listener only the federation API, the plain-HTTP listener only the client API.
        let app = move |routes: Routes| {
            App::new()
                .app_data(state.clone())
                .wrap_fn(|req, srv| {
                    let started = Instant::now();
                    if req.method() == Method::OPTIONS {
                        // CORS preflight: answered for every path, before routing.
                        let mut res = HttpResponse::Ok().json(serde_json::json!({}));
                        add_cors(res.headers_mut());
                        return Either::Left(ready(Ok(req.into_response(res))));
                    }
                    let method = req.method().to_string();
                    Either::Right(srv.call(req).map(move |res| {
                        res.map(|mut res| {
                            add_cors(res.headers_mut());
                            let route = res
                                .request()
                                .app_data::<crate::routing::ruma::RouteLabel>()
                                .map_or("unmatched", |l| l.0.as_str());
                            crate::metrics::observe_http(
                                route,
                                &method,
                                res.status().as_u16(),
                                started.elapsed(),
                            );
                            res
                        })
                    }))
                })
                .configure(move |cfg| match routes {
                    Routes::All => client::router().mount(cfg),
                    Routes::Federation => crate::routing::federation::router().mount(cfg),
                    Routes::Client => client::router_with(false).mount(cfg),
                })
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(MatrixError::unrecognized())
                }))
        };
        let tls = if config.server.tls_cert.is_empty() {
            None
        } else {
            Some(server_tls(&config.server.tls_cert, &config.server.tls_key)?)
        };
        // Starts an HTTP server for `$factory` on `$listener` (HTTPS with `$tls`) and keeps
        // its handle for `Node::stop`.
        macro_rules! start_listener {
            ($factory:expr, $listener:expr, $key:expr, $addr:expr, $tls:expr) => {{
                let server = HttpServer::new($factory)
                    .workers(workers)
                    .disable_signals()
                    // Long polls may wait minutes: a stop gives requests in flight 5 s, then
                    // closes them.
                    .shutdown_timeout(5);
                let server = match $tls {
                    Some(tls) => server.listen_rustls_0_23($listener, tls),
                    None => server.listen($listener),
                }
                .map_err(|error| StartError::Listen {
                    key: $key,
                    addr: $addr,
                    error,
                })?
                .run();
                servers.push(server.handle());
                actix_web::rt::spawn(server);
            }};
        }
        let client_app = app.clone();
        start_listener!(
            move || client_app(Routes::All),
            listener,
            "server.listen",
            config.server.listen.clone(),
            tls.clone()
        );

        // The plain-HTTP client listener beside an HTTPS one, when asked for.
        let http_addr = if config.server.http_listen.is_empty() {
            None
        } else {
            let listen = config.server.http_listen.as_str();
            let listener = bind("server.http_listen", listen)?;
            let bound = listener.local_addr().ok();
            let http_app = app.clone();
            start_listener!(
                move || http_app(Routes::Client),
                listener,
                "server.http_listen",
                listen.into(),
                None
            );
            bound
        };

        // Federation listener, when asked for.
        let federation_addr = if config.federation.listen.is_empty() {
            None
        } else {
            let listen = config.federation.listen.as_str();
            let listener = bind("federation.listen", listen)?;
            let bound = listener.local_addr().ok();
            start_listener!(
                move || app(Routes::Federation),
                listener,
                "federation.listen",
                listen.into(),
                tls
            );
            bound
        };

        tracing::info!(
            server_name = %config.server.name,
            client = %client_addr,
            http = ?http_addr,
            federation = ?federation_addr,
            metrics = ?metrics_addr,
            internal = ?internal_addr,
            "myelin node started"
        );
        Ok(Node {
            client_addr,
            http_addr,
            federation_addr,
            metrics_addr,
            internal_addr,
            servers,
            exec,
        })
    }

    /// Stops the listeners, letting requests in flight finish.
    pub async fn stop(self) {
        for s in self.servers {
            s.stop(true).await;
        }
        if let Some(exec) = self.exec {
            exec.stop();
        }
    }
}
