//! The outbound federation client: every request this server makes to another homeserver
//! goes through [`FederationClient`].
//!
//! - **Where**: [`Discovery`](super::discovery::Discovery) turns the server name into a
//!   [`Destination`] (URL, `Host` header, SRV target); `federation.test_destinations` replaces
//!   discovery for the names it lists (tests only).
//! - **Guarded**: connections go through [`GuardedResolver`] with `server.ip_range_denylist`;
//!   IP literals (which no resolver sees) are checked before sending. Redirects are not
//!   followed, except for `.well-known`, where each hop is checked the same way.
//! - **TLS**: rustls (ring) with the public web PKI roots plus `federation.ca_file`; HTTP/1.1
//!   only (ALPN), so the `Host` header is the one discovery chose. `federation.verify_tls =
//!   false` accepts any certificate (tests only; the node warns at start).
//! - **Bounded**: the connection by `federation.connect_timeout`, each exchange as a whole by
//!   `federation.request_timeout`, each response body by `federation.max_response_bytes` (or
//!   a smaller limit the caller gives).
//! - **Signed**: requests carry `Authorization: X-Matrix origin=…,destination=…,key=…,sig=…`
//!   over the method, URI, origin, destination and JSON body (ruma's `XMatrix`).
//! - **Reused**: awc's client (and its connection pool) is bound to one thread, so each
//!   thread keeps one per federation client and reuses its connections.

use super::discovery::{Destination, Discovery, Lookups, WellKnownAnswer, WELL_KNOWN_MAX_BYTES};
use crate::net::{GuardedResolver, IpDenylist, Routes};
use crate::signing_key::SigningKey;
use actix_tls::connect::Resolver;
use actix_web::http::header;
use bytes::Bytes;
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What went wrong calling another server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FederationError {
    /// The destination is in `server.ip_range_denylist` (or resolves only into it).
    #[error("{server}: {detail}")]
    Denied { server: String, detail: String },
    /// No answer: DNS, connection, TLS, timeout.
    #[error("{server} is unreachable: {detail}")]
    Unreachable { server: String, detail: String },
    /// The answer was larger than the limit.
    #[error("{server} answered more than {limit} bytes")]
    TooLarge { server: String, limit: usize },
    /// An answer that is not what the API promises (not a JSON object).
    #[error("{server} gave an invalid answer: {detail}")]
    BadResponse { server: String, detail: String },
    /// A non-2xx answer, with the Matrix error if there was one.
    #[error("{server} refused the request ({status} {errcode}: {error})")]
    Refused {
        server: String,
        status: u16,
        errcode: String,
        error: String,
    },
}

/// How the client is set up; built from `[federation]` and `[server]` by the node.
pub struct ClientSettings {
    pub server_name: OwnedServerName,
    pub key: Arc<SigningKey>,
    pub denylist: Arc<IpDenylist>,
    pub verify_tls: bool,
    pub ca_file: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    /// Server name -> base URL, instead of discovery (tests only).
    pub test_destinations: BTreeMap<String, String>,
}

/// The outbound federation client; cheap to clone, shared by every thread.
#[derive(Clone)]
pub struct FederationClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tells this client's per-thread awc clients apart from other instances' (tests run
    /// several nodes in one process).
    id: u64,
    server_name: OwnedServerName,
    key: Arc<SigningKey>,
    tls: Arc<rustls::ClientConfig>,
    denylist: Arc<IpDenylist>,
    routes: Arc<Routes>,
    discovery: Discovery,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
    test_destinations: BTreeMap<String, String>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's awc client of each federation client (awc's client is `!Send`).
    static CLIENTS: RefCell<HashMap<u64, awc::Client>> = RefCell::new(HashMap::new());
}

/// A raw answer: status and body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub body: Bytes,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    pub location: Option<String>,
}

impl FederationClient {
    /// Builds the client; fails on an unreadable `ca_file`.
    pub fn new(settings: ClientSettings) -> Result<FederationClient, String> {
        let tls = tls_config(settings.verify_tls, &settings.ca_file)?;
        Ok(FederationClient {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                server_name: settings.server_name,
                key: settings.key,
                tls: Arc::new(tls),
                denylist: settings.denylist,
                routes: Arc::new(Routes::default()),
                discovery: Discovery::default(),
                connect_timeout: settings.connect_timeout,
                request_timeout: settings.request_timeout,
                max_response_bytes: settings.max_response_bytes,
                test_destinations: settings.test_destinations,
            }),
        })
    }

    /// This server's name (the `origin` of its requests).
    pub fn server_name(&self) -> &ServerName {
        &self.inner.server_name
    }

    /// The largest response accepted by default.
    pub fn max_response_bytes(&self) -> usize {
        self.inner.max_response_bytes
    }

    /// This thread's awc client for this federation client.
    fn http(&self) -> awc::Client {
        CLIENTS.with(|clients| {
            clients
                .borrow_mut()
                .entry(self.inner.id)
                .or_insert_with(|| {
                    let resolver = GuardedResolver::new(
                        self.inner.denylist.clone(),
                        Some(self.inner.routes.clone()),
                    );
                    let connector = awc::Connector::new()
                        .connector(
                            actix_tls::connect::Connector::new(Resolver::custom(resolver))
                                .service(),
                        )
                        .rustls_0_23(self.inner.tls.clone())
                        .timeout(self.inner.connect_timeout)
                        .handshake_timeout(self.inner.connect_timeout)
                        .conn_keep_alive(Duration::from_secs(60));
                    awc::Client::builder()
                        .connector(connector)
                        .timeout(self.inner.request_timeout)
                        .disable_redirects()
                        .add_default_header((
                            header::USER_AGENT,
                            concat!("myelin/", env!("CARGO_PKG_VERSION")),
                        ))
                        .finish()
                })
                .clone()
        })
    }

    /// Where `destination` is reached: a test override, else discovery.
    pub async fn destination(&self, destination: &ServerName) -> Destination {
        if let Some(base) = self.inner.test_destinations.get(destination.as_str()) {
            let base = base.trim_end_matches('/').to_owned();
            let host_header = base
                .split_once("://")
                .map_or(base.as_str(), |(_, a)| a)
                .to_owned();
            return Destination {
                base,
                host_header,
                connect_to: None,
            };
        }
        let destination_found = self.inner.discovery.resolve(destination, self).await;
        if let Some(target) = &destination_found.connect_to {
            let (host, port) = destination_found.host_and_port();
            self.inner.routes.set(&host, port, target);
        }
        destination_found
    }

    /// `GET` with a signature; the answer must be a JSON object.
    pub async fn get(
        &self,
        destination: &ServerName,
        path: &str,
    ) -> Result<Value, FederationError> {
        self.json(http::Method::GET, destination, path, None, true, None)
            .await
    }

    /// `POST` a JSON body with a signature; the answer must be a JSON object.
    pub async fn post(
        &self,
        destination: &ServerName,
        path: &str,
        body: &Value,
    ) -> Result<Value, FederationError> {
        self.json(
            http::Method::POST,
            destination,
            path,
            Some(body),
            true,
            None,
        )
        .await
    }

    /// A request whose answer must be a 2xx JSON object. `sign`: add the `X-Matrix`
    /// signature (every endpoint but the key and version ones wants it). `limit`: the
    /// largest answer, `federation.max_response_bytes` by default.
    pub async fn json(
        &self,
        method: http::Method,
        destination: &ServerName,
        path: &str,
        body: Option<&Value>,
        sign: bool,
        limit: Option<usize>,
    ) -> Result<Value, FederationError> {
        let server = destination.to_string();
        let raw = self
            .request(method, destination, path, body, sign, limit)
            .await?;
        let parsed: Option<Value> = serde_json::from_slice(&raw.body)
            .ok()
            .filter(Value::is_object);
        if !(200..300).contains(&raw.status) {
            let field = |k: &str| {
                parsed
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect::<String>()
            };
            return Err(FederationError::Refused {
                server,
                status: raw.status,
                errcode: field("errcode"),
                error: field("error"),
            });
        }
        parsed.ok_or_else(|| FederationError::BadResponse {
            server,
            detail: format!("{path} did not answer a JSON object"),
        })
    }

    /// Sends one request to another server and reads its answer (any status).
    pub async fn request(
        &self,
        method: http::Method,
        destination: &ServerName,
        path: &str,
        body: Option<&Value>,
        sign: bool,
        limit: Option<usize>,
    ) -> Result<RawResponse, FederationError> {
        let target = self.destination(destination).await;
        let url = format!("{}{path}", target.base);
        let body =
            body.map(serde_json::to_vec)
                .transpose()
                .map_err(|e| FederationError::BadResponse {
                    server: destination.to_string(),
                    detail: format!("request body does not serialize: {e}"),
                })?;
        let authorization = if sign {
            Some(self.sign(
                &method,
                destination,
                path,
                body.as_deref().unwrap_or_default(),
            )?)
        } else {
            None
        };
        self.exchange(
            destination.as_str(),
            &target,
            &url,
            method,
            authorization,
            body,
            limit.unwrap_or(self.inner.max_response_bytes),
        )
        .await
    }

    /// The `X-Matrix` header value of a request.
    fn sign(
        &self,
        method: &http::Method,
        destination: &ServerName,
        path: &str,
        body: &[u8],
    ) -> Result<String, FederationError> {
        let bad = |detail: String| FederationError::BadResponse {
            server: destination.to_string(),
            detail,
        };
        let request = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .body(body)
            .map_err(|e| bad(format!("bad request URI {path:?}: {e}")))?;
        XMatrix::sign_http_request(
            &request,
            XMatrixSigningInput::new(
                self.inner.server_name.clone(),
                destination.to_owned(),
                self.inner.key.key_pair(),
            ),
        )
        .map(|x| x.to_string())
        .map_err(|e| bad(format!("cannot sign the request: {e}")))
    }

    /// One HTTP exchange, bounded in time and size, after the denylist check of an IP
    /// literal URL host.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        server: &str,
        target: &Destination,
        url: &str,
        method: http::Method,
        authorization: Option<String>,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<RawResponse, FederationError> {
        let (host, _) = target.host_and_port();
        self.inner
            .denylist
            .check_host(target.connect_to.as_deref().unwrap_or(&host))
            .map_err(|detail| FederationError::Denied {
                server: server.to_owned(),
                detail,
            })?;
        let unreachable = |detail: String| FederationError::Unreachable {
            server: server.to_owned(),
            detail,
        };
        let method = actix_web::http::Method::from_bytes(method.as_str().as_bytes())
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let mut request = self
                .http()
                .request(method, url)
                .insert_header((header::HOST, target.host_header.as_str()));
            if let Some(auth) = &authorization {
                request = request.insert_header((header::AUTHORIZATION, auth.as_str()));
            }
            let sent = match body {
                Some(b) => {
                    request
                        .insert_header((header::CONTENT_TYPE, "application/json"))
                        .send_body(b)
                        .await
                }
                None => request.send().await,
            };
            let mut response = sent.map_err(|e| {
                let detail = e.to_string();
                if detail.contains("server.ip_range_denylist") {
                    FederationError::Denied {
                        server: server.to_owned(),
                        detail,
                    }
                } else {
                    unreachable(detail)
                }
            })?;
            let header_of = |name: header::HeaderName| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let cache_control = header_of(header::CACHE_CONTROL);
            let expires = header_of(header::EXPIRES);
            let location = header_of(header::LOCATION);
            let status = response.status().as_u16();
            let body = response.body().limit(limit).await.map_err(|e| match e {
                awc::error::PayloadError::Overflow => FederationError::TooLarge {
                    server: server.to_owned(),
                    limit,
                },
                other => unreachable(other.to_string()),
            })?;
            Ok(RawResponse {
                status,
                body,
                cache_control,
                expires,
                location,
            })
        };
        actix_web::rt::time::timeout(self.inner.request_timeout, exchange)
            .await
            .map_err(|_| unreachable("timed out".into()))?
    }
}

/// Discovery's network side: `.well-known` over this client (following up to 5 redirects,
/// each checked against the denylist) and SRV through hickory's resolver (one per thread).
impl Lookups for FederationClient {
    async fn well_known(&self, host: &str) -> Result<WellKnownAnswer, String> {
        let mut url = format!("https://{host}/.well-known/matrix/server");
        for _ in 0..=5 {
            let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
            let (Some(h), Some(scheme)) = (uri.host(), uri.scheme_str()) else {
                return Err(format!("{url} has no host"));
            };
            let port = uri
                .port_u16()
                .unwrap_or(if scheme == "http" { 80 } else { 443 });
            let target = Destination {
                base: format!("{scheme}://{h}:{port}"),
                host_header: uri.authority().map_or(h, |a| a.as_str()).to_owned(),
                connect_to: None,
            };
            let raw = self
                .exchange(
                    host,
                    &target,
                    &url,
                    http::Method::GET,
                    None,
                    None,
                    WELL_KNOWN_MAX_BYTES,
                )
                .await
                .map_err(|e| e.to_string())?;
            if matches!(raw.status, 301 | 302 | 303 | 307 | 308) {
                let location = raw.location.ok_or("a redirect without Location")?;
                url = match location.parse::<http::Uri>() {
                    Ok(u) if u.scheme().is_some() => location,
                    _ => format!("{scheme}://{}{location}", target.host_header),
                };
                continue;
            }
            return Ok(WellKnownAnswer {
                status: raw.status,
                cache_control: raw.cache_control,
                expires: raw.expires,
                body: raw.body.to_vec(),
            });
        }
        Err("too many redirects".into())
    }

    async fn srv(&self, name: &str) -> Option<(String, u16)> {
        thread_local! {
            static SRV: RefCell<Option<Option<hickory_resolver::TokioAsyncResolver>>> =
                const { RefCell::new(None) };
        }
        let resolver = SRV.with(|cell| {
            cell.borrow_mut()
                .get_or_insert_with(|| {
                    hickory_resolver::TokioAsyncResolver::tokio_from_system_conf()
                        .inspect_err(
                            |e| tracing::warn!(error = %e, "no DNS resolver for SRV lookups"),
                        )
                        .ok()
                })
                .clone()
        })?;
        let answer = resolver.srv_lookup(format!("{name}.")).await.ok()?;
        let best = answer
            .iter()
            .min_by_key(|srv| (srv.priority(), std::cmp::Reverse(srv.weight())))?;
        let target = best.target().to_utf8();
        let target = target.trim_end_matches('.');
        // "." means "no such service here".
        (!target.is_empty()).then(|| (target.to_owned(), best.port()))
    }
}

/// The TLS setup of outbound federation: the web PKI roots plus `ca_file`, or with
/// `verify = false` no verification at all (tests only). HTTP/1.1 only.
pub fn tls_config(verify: bool, ca_file: &str) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if verify {
        let mut roots = actix_tls::connect::rustls_0_23::webpki_roots_cert_store();
        if !ca_file.is_empty() {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
                .map_err(|e| format!("federation.ca_file {ca_file}: {e}"))?;
            let mut added = 0;
            for cert in certs {
                let cert = cert.map_err(|e| format!("federation.ca_file {ca_file}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("federation.ca_file {ca_file}: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!(
                    "federation.ca_file {ca_file}: no PEM certificate in it"
                ));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts every certificate (`federation.verify_tls = false`, tests only); handshake
/// signatures are still checked, so the connection is at least consistent.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{web, App, HttpResponse, HttpServer};

    fn client(denylist: &[&str], destinations: &[(&str, String)], max: usize) -> FederationClient {
        FederationClient::new(ClientSettings {
            server_name: "origin.test".try_into().unwrap(),
            key: Arc::new(SigningKey::for_tests()),
            denylist: Arc::new(IpDenylist::parse(denylist).unwrap()),
            verify_tls: true,
            ca_file: String::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_response_bytes: max,
            test_destinations: destinations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        })
        .unwrap()
    }

    /// A loopback server answering `/small` with a small object, `/big` with 200 KB, and
    /// `/auth` with the Authorization header it got.
    async fn serve() -> (String, actix_web::dev::ServerHandle) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(|| {
            App::new()
                .route(
                    "/small",
                    web::get()
                        .to(|| async { HttpResponse::Ok().json(serde_json::json!({"ok": true})) }),
                )
                .route(
                    "/big",
                    web::get().to(|| async {
                        HttpResponse::Ok().body(format!("{{\"pad\": \"{}\"}}", "x".repeat(200_000)))
                    }),
                )
                .route(
                    "/auth",
                    web::post().to(|req: actix_web::HttpRequest| async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        HttpResponse::Ok().json(serde_json::json!({ "auth": auth }))
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        (format!("http://{addr}"), handle)
    }

    #[actix_web::test]
    async fn the_default_denylist_refuses_loopback_and_an_empty_one_allows_it() {
        let (base, handle) = serve().await;
        let dest = ruma::server_name!("dest.test");
        let guarded = client(
            crate::net::DEFAULT_DENYLIST,
            &[("dest.test", base.clone())],
            1 << 20,
        );
        let err = guarded.get(dest, "/small").await.unwrap_err();
        assert!(matches!(err, FederationError::Denied { .. }), "{err}");
        // An IP literal server name is refused before any connection too.
        let err = guarded
            .get(ruma::server_name!("127.0.0.1:1"), "/small")
            .await
            .unwrap_err();
        assert!(matches!(err, FederationError::Denied { .. }), "{err}");
        let open = client(&[], &[("dest.test", base)], 1 << 20);
        let answer = open.get(dest, "/small").await.unwrap();
        assert_eq!(answer["ok"], true);
        handle.stop(false).await;
    }

    #[actix_web::test]
    async fn answers_past_the_size_cap_are_refused() {
        let (base, handle) = serve().await;
        let dest = ruma::server_name!("dest.test");
        let small = client(&[], &[("dest.test", base.clone())], 100_000);
        let err = small.get(dest, "/big").await.unwrap_err();
        assert!(
            matches!(err, FederationError::TooLarge { limit: 100_000, .. }),
            "{err}"
        );
        let large = client(&[], &[("dest.test", base)], 1 << 20);
        assert!(large.get(dest, "/big").await.is_ok());
        handle.stop(false).await;
    }

    #[actix_web::test]
    async fn requests_are_signed_with_x_matrix() {
        let (base, handle) = serve().await;
        let dest = ruma::server_name!("dest.test");
        let c = client(&[], &[("dest.test", base)], 1 << 20);
        let body = serde_json::json!({"hello": "world"});
        let answer = c.post(dest, "/auth", &body).await.unwrap();
        let header = answer["auth"].as_str().unwrap();
        let x = XMatrix::parse(header).unwrap();
        assert_eq!(x.origin, "origin.test");
        assert_eq!(
            x.destination.as_deref().map(|d| d.as_str()),
            Some("dest.test")
        );
        let key = SigningKey::for_tests();
        let request = http::Request::builder()
            .method("POST")
            .uri("/auth")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        x.verify_http_request(
            &request,
            dest,
            &key.public_key_map(ruma::server_name!("origin.test")),
        )
        .unwrap();
        handle.stop(false).await;
    }

    #[test]
    fn tls_settings_load_a_private_ca() {
        assert!(tls_config(true, "").is_ok());
        assert!(tls_config(false, "").is_ok());
        assert!(tls_config(true, "/nonexistent.pem").is_err());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        assert!(tls_config(true, empty.to_str().unwrap()).is_err());
    }
}
