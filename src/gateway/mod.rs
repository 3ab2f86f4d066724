//! `tidal gateway`: request-reply over the stream for callers that must stay synchronous.
//!
//! A REST client posts a request; the gateway produces it to the request topic, waits for the
//! correlated result (or dead letter) on the result topics and returns it, or answers 504 at its
//! timeout. The work itself still flows through Kafka: a spike queues in the topic instead of
//! overloading a model server, the processors keep their exactly-once guarantees, and a client's
//! retry after a timeout with the same `id` does not run the model twice if the first result
//! is still to come — it waits for it. Each gateway replica reads every result partition (no
//! consumer group), which suits modest request rates; high-volume clients should use the topics.
//!
//! Exposed to many teams, it knows who calls (`access`: API keys bound to tenants and their
//! models) and how much it takes in (`quota`: a rate per tenant, caps on what is in flight).

pub mod access;
mod http;
mod listener;
pub mod quota;
pub mod tls;
mod waiters;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;

use crate::config::{KafkaConfig, TopicNames};
use crate::error::{Error, Result};
use crate::kafka;
pub use waiters::{Answer, Waiters};

/// What a gateway serves and how long it waits.
#[derive(Debug)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// Models it accepts requests for (topic suffixes).
    pub models: Vec<String>,
    /// The processors' topic names.
    pub topics: TopicNames,
    /// Default wait for a result.
    pub timeout: Duration,
    /// Longest wait a client may ask for (`?timeout_ms=`).
    pub max_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Who may call (None: anyone who reaches the listener).
    pub tenants: Option<access::Tenants>,
    /// Most requests in flight at once, over all callers.
    pub max_in_flight: usize,
    /// Most request-body bytes held at once, over all callers.
    pub max_bytes_in_flight: usize,
    /// HTTPS on the listener (None: plain HTTP, e.g. behind an ingress that terminates TLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A gateway's shared state.
pub struct Gateway {
    settings: GatewaySettings,
    producer: FutureProducer,
    waiters: Arc<Waiters>,
    admission: quota::Admission,
    listener: listener::Listener,
}

impl Gateway {
    /// Connects: the result reader starts at the current end of every result partition before
    /// the gateway takes requests.
    pub fn connect(kafka_config: &KafkaConfig, settings: GatewaySettings) -> Result<Self> {
        // No request waits longer than max_timeout, so none is delivered later than that either;
        // the producer's queue holds at most the bytes the gateway admits.
        let queue_kbytes = (settings.max_bytes_in_flight / 1024).clamp(1024, 2_097_151);
        let producer: FutureProducer = kafka::idempotent_producer_config(kafka_config, "tidal-gateway")?
            .set("message.max.bytes", (settings.max_body_bytes + 64 * 1024).to_string())
            .set("message.timeout.ms", settings.max_timeout.as_millis().max(1000).to_string())
            .set("queue.buffering.max.kbytes", queue_kbytes.to_string())
            .create()
            .map_err(|e| Error::kafka("creating the gateway's producer", e))?;
        let mut topics: Vec<String> =
            settings.models.iter().map(|m| format!("{}{m}", settings.topics.result_prefix)).collect();
        topics.push(settings.topics.dead_letter.clone());
        let waiters = Arc::new(Waiters::default());
        let listener = listener::Listener::start(kafka_config, topics, waiters.clone())?;
        let admission = quota::Admission::new(settings.max_in_flight, settings.max_bytes_in_flight);
        Ok(Gateway { settings, producer, waiters, admission, listener })
    }

    fn listener_alive(&self) -> bool {
        self.listener.is_alive()
    }

    /// Serves HTTP until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
        let address = self.settings.listen;
        let socket = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Error::Gateway(format!("cannot listen on {address}: {e} (is the port in use?)")))?;
        let tenants = self.settings.tenants.as_ref().map_or(0, |t| t.len());
        if tenants == 0 {
            tracing::warn!("no --tenants: anyone who reaches {address} may call every model, without a quota");
        }
        let scheme = if self.settings.tls.is_some() { "https" } else { "http" };
        tracing::info!(%address, scheme, models = ?self.settings.models, tenants, "gateway listening: POST /v1/models/<model>");
        let tls = self.settings.tls.clone();
        let router = http::router(Arc::new(self));
        let served = match tls {
            Some(config) => {
                let listener = tls::TlsListener::new(socket, config)
                    .map_err(|e| Error::Gateway(format!("cannot listen on {address}: {e}")))?;
                axum::serve(listener, router).with_graceful_shutdown(shutdown).await
            }
            None => axum::serve(socket, router).with_graceful_shutdown(shutdown).await,
        };
        served.map_err(|e| Error::Gateway(format!("the HTTP server failed: {e}")))
    }
}
