//! The public face of `bridgemesh up --domain`: HTTPS and WSS on TCP 443 (the web client, the
//! control API and every in-process bridge's signaling, one origin, one certificate), TURN over
//! TLS on the same port, and TCP 80 for ACME http-01 and redirects to https.
//!
//! # Layout
//! - `config.rs`: [`PublicConfig`], the operator's settings, with `Default` and `validate()`.
//! - `state_dir.rs`: secrets, the ACME account and certificate, the Raft data, kept across restarts.
//! - `certificate.rs`: PEM loading and the slot rustls reads at each handshake (hot swap);
//!   `cert_files.rs`: certificate files reloaded when they change.
//! - `renewal.rs`: when to order a certificate (sans-IO); `acme.rs`: ordering it (instant-acme).
//! - `listener.rs`: TLS termination and the STUN/HTTP split of TCP 443.
//! - `redirect.rs`: TCP 80.
//!
//! Start: [`PublicFront::bind`] (so the bridges know the public URLs), then
//! [`PublicFront::serve`] with the assembled router: port 80 first, then the certificate (files,
//! the stored one, or a new ACME order validated through port 80), then 443, then renewal.
//! This listener is for browsers; links between nodes are not its business.

pub mod acme;
pub mod cert_files;
pub mod certificate;
pub mod config;
pub mod listener;
pub mod redirect;
pub mod renewal;
pub mod state_dir;

pub use config::{PublicConfig, PublicConfigError};

use crate::public::acme::{AcmeClient, run_renewal, stored_certificate};
use crate::public::cert_files::{CertificateFiles, watch_files};
use crate::public::certificate::{CertificateSlot, LoadedCertificate, server_config};
use crate::public::listener::{PublicListener, PublicListenerConfig};
use crate::public::redirect::Http01Challenges;
use crate::public::state_dir::StateDir;
use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use bridgemesh_turn::TurnServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The public listeners, bound but not yet serving.
pub struct BoundFront {
    https: TcpListener,
    http: TcpListener,
    pub https_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

/// HTTPS, TURN over TLS and port 80, serving.
pub struct PublicFront {
    pub https_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The certificate in use and every one swapped in after it.
    pub certificates: watch::Receiver<Option<LoadedCertificate>>,
    /// How long the first ACME order took, when this start made one.
    pub first_order: Option<Duration>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl BoundFront {
    pub async fn bind(config: &PublicConfig) -> anyhow::Result<Self> {
        let bind = |port: u16, what: &'static str| {
            let addr = SocketAddr::new(config.bind_ip, port);
            async move {
                TcpListener::bind(addr).await.with_context(|| {
                    format!(
                        "cannot listen on TCP {addr} for {what} (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    )
                })
            }
        };
        let https = bind(config.https_port, "HTTPS").await?;
        let http = bind(config.http_port, "HTTP (ACME and the redirect to HTTPS)").await?;
        Ok(Self {
            https_addr: https.local_addr()?,
            http_addr: http.local_addr()?,
            https,
            http,
        })
    }

    /// `https://domain` (with the port when it is not 443).
    pub fn origin(&self, config: &PublicConfig) -> String {
        match self.https_addr.port() {
            443 => format!("https://{}", config.domain),
            port => format!("https://{}:{port}", config.domain),
        }
    }

    /// Serves: port 80 at once, then the certificate, then 443 with `router` and `turn`.
    pub async fn serve(
        self,
        config: &PublicConfig,
        state: &StateDir,
        router: axum::Router,
        turn: Option<Arc<TurnServer>>,
    ) -> anyhow::Result<PublicFront> {
        let (stop, stopped) = watch::channel(false);
        let challenges = Http01Challenges::default();
        let mut tasks = vec![bridgemesh_control::service::serve_http(
            self.http,
            redirect::router(&config.domain, self.https_addr.port(), challenges.clone()),
            stopped.clone(),
        )];
        let mut first_order = None;
        let mut acme_client = None;
        let mut watched_files = None;
        let certificate = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let files = CertificateFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    domain: config.domain.clone(),
                };
                let certificate = files.load()?;
                watched_files = Some(files);
                certificate
            }
            _ => {
                let mut client = AcmeClient::new(
                    config.acme(),
                    config.domain.clone(),
                    state.clone(),
                    challenges.clone(),
                );
                let certificate = match stored_certificate(state, &config.domain, &config.acme_directory) {
                    Some(stored) => stored,
                    None => {
                        tracing::info!(directory = %config.acme_directory, "ordering a certificate by ACME");
                        let (certificate, issued) = client.order().await.with_context(|| {
                            format!("cannot get a certificate for {} by ACME", config.domain)
                        })?;
                        tracing::info!(took_ms = issued.elapsed.as_millis() as u64, "certificate issued");
                        first_order = Some(issued.elapsed);
                        certificate
                    }
                };
                acme_client = Some(client);
                certificate
            }
        };
        let slot = CertificateSlot::new(Some(certificate.clone()));
        let (issued_tx, certificates) = watch::channel(Some(certificate));
        let tls = server_config(slot.clone()).context("TLS configuration")?;
        let listener = PublicListener::new(self.https, tls, turn, PublicListenerConfig::default())?
            // For `ConnectInfo<SocketAddr>` (join placement and rate limits use the client's address).
            .tap_io(|_| {});
        {
            let mut stopped = stopped.clone();
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.changed().await;
                };
                if let Err(err) = axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(%err, "HTTPS server stopped");
                }
            }));
        }
        if let Some(client) = acme_client {
            tasks.push(tokio::spawn(run_renewal(
                client,
                slot,
                issued_tx,
                stopped.clone(),
            )));
        } else if let Some(files) = watched_files {
            let every = Duration::from_secs(config.tls_files_check_s);
            tasks.push(tokio::spawn(watch_files(
                files,
                every,
                slot,
                issued_tx,
                stopped.clone(),
            )));
        }
        Ok(PublicFront {
            https_addr: self.https_addr,
            http_addr: self.http_addr,
            certificates,
            first_order,
            stop,
            tasks,
        })
    }
}

impl PublicFront {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(3), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}
