//! MQTT adapter over `rumqttc`: one connection to the local broker serves the update agent
//! and the things (digital twin) interface.
//!
//! - The event loop runs in its own task and only moves packets: it never waits for the
//!   consumers' work. Incoming publishes go to the consumer whose filter matches.
//! - A stable client ID (kept in the state dir) and a persistent session (clean session off),
//!   QoS 1 both ways: what the broker queued while leda-cm was reconnecting is delivered.
//! - Incoming messages are acknowledged by the consumer once it has taken them over
//!   (manual acks), so a desired state is not lost to a crash between receipt and persisting.
//! - Reconnects with back-off; subscriptions are made again on every ConnAck.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, NetworkOptions, Packet, Publish,
    QoS, SubscribeFilter, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

use crate::config::ConnectionConfig;
use crate::supervisor::{Pulse, Shutdown, TaskResult};

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("invalid connection.broker_url {url:?}: {reason}")]
    BrokerUrl { url: String, reason: String },
    #[error("cannot read {what} {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("connection.transport: client_cert and client_key go together")]
    ClientAuth,
    #[error("publishing to {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    /// The outgoing queue is full (the broker is away or slow); nothing was queued, so the
    /// caller may keep the message and try again.
    #[error("publishing to {topic} failed: the outgoing queue ({QUEUE} messages) is full, the broker is not taking them ({dropped} refused so far)")]
    QueueFull {
        topic: String,
        payload: Vec<u8>,
        dropped: u64,
    },
}

/// The largest MQTT packet (the remaining-length field's limit, MQTT 3.1.1 §2.2.3).
pub const MAX_INCOMING_PACKET: usize = 268_435_455;

/// An incoming message, with what acknowledges it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    ack: Option<Publish>,
}

/// What a consumer hears from the connection.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// Connected (again), subscriptions renewed.
    Connected {
        session_present: bool,
    },
    Disconnected,
    Message(Message),
}

/// Matches an MQTT topic against a subscription filter (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `tcp://host:port`, `mqtt://…` (plain) or `ssl://`, `tls://`, `mqtts://` (TLS).
pub fn parse_broker_url(url: &str) -> Result<(String, u16, bool), MqttError> {
    let err = |reason: &str| MqttError::BrokerUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| err("expected scheme://host:port"))?;
    let tls = match scheme {
        "tcp" | "mqtt" => false,
        "ssl" | "tls" | "mqtts" => true,
        _ => {
            return Err(err(
                "unsupported scheme, expected tcp, mqtt, ssl, tls or mqtts",
            ))
        }
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>().map_err(|_| err("invalid port"))?,
        ),
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(err("no host"));
    }
    Ok((host.to_string(), port, tls))
}

/// Where a consumer's messages go.
#[derive(Clone)]
pub struct Consumer {
    to: mpsc::Sender<Incoming>,
}

struct Route {
    filter: String,
    to: mpsc::Sender<Incoming>,
}

/// The publishing side and the subscriptions; cheap to clone.
#[derive(Clone)]
pub struct Mqtt {
    client: AsyncClient,
    routes: Arc<Mutex<Vec<Route>>>,
    /// Consumers that hear connection changes without subscribing.
    listeners: Arc<Mutex<Vec<mpsc::Sender<Incoming>>>>,
    connected: Arc<AtomicBool>,
    /// Consumers that still publish after shutdown began (`publisher`): the event loop
    /// keeps the connection up for them, within `DRAIN`.
    publishers: Arc<(AtomicUsize, tokio::sync::Notify)>,
    /// Messages the full outgoing queue could not take.
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// The outgoing queue: what may wait for the broker (a twin of 20 containers is ~25
/// messages, feedback of an apply ~15).
const QUEUE: usize = 256;

/// How long the connection stays up after shutdown began, for what publishers still send.
const DRAIN: Duration = Duration::from_secs(8);

/// Held by a consumer that may still publish during shutdown (see `Mqtt::publisher`).
pub struct Publisher(Arc<(AtomicUsize, tokio::sync::Notify)>);

impl Drop for Publisher {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Mqtt {
    /// Checks the connection settings (URL, TLS files, credentials) without connecting or
    /// writing anything: the daemon calls it before it makes any directory.
    pub fn check(config: &ConnectionConfig) -> Result<(), MqttError> {
        Self::options(config, "leda-cm-check").map(drop)
    }

    /// A connection as configured; `event_loop` must then run (as a supervised task).
    pub fn new(config: &ConnectionConfig, client_id: &str) -> Result<(Mqtt, EventLoop), MqttError> {
        let mut options = Self::options(config, client_id)?;
        let queue = match crate::fault::mqtt_queue() {
            Some(n) => {
                options.set_inflight(1);
                n
            }
            None => QUEUE,
        };
        let (client, mut event_loop) = AsyncClient::new(options, queue);
        // Feedback is a burst of small packets: no Nagle delay (40 ms per burst on loopback).
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        // connection.connect_timeout (whole seconds, at least one).
        network.set_connection_timeout(config.connect_timeout.0.as_secs().max(1));
        event_loop.set_network_options(network);
        Ok((
            Mqtt {
                client,
                routes: Arc::default(),
                listeners: Arc::default(),
                connected: Arc::default(),
                publishers: Arc::default(),
                dropped: Arc::default(),
            },
            event_loop,
        ))
    }

    /// The client options for `config`; reads the TLS files it names.
    fn options(config: &ConnectionConfig, client_id: &str) -> Result<MqttOptions, MqttError> {
        let (host, port, tls) = parse_broker_url(&config.broker_url)?;
        let mut options = MqttOptions::new(client_id, host, port);
        let keep_alive = config.keep_alive.0.max(Duration::from_secs(1));
        options
            .set_keep_alive(keep_alive)
            .set_clean_session(false)
            .set_manual_acks(true)
            // Incoming: MQTT's own limit. rumqttc drops the connection on a larger packet
            // without acknowledging it, and the broker then delivers it again on every
            // reconnect (the device would be offline for good); so every message the broker
            // accepts is read, and its consumer rejects (and acknowledges) what is too large
            // for it. The broker's `max_packet_size` bounds the memory this can take.
            .set_max_packet_size(MAX_INCOMING_PACKET, 1 << 20);
        if !config.client_username.is_empty() {
            options.set_credentials(
                config.client_username.clone(),
                config.client_password.expose().to_string(),
            );
        }
        let t = &config.transport;
        if tls || !t.root_ca.is_empty() {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let read = |what: &'static str, path: &str| {
                std::fs::read(path).map_err(|source| MqttError::TlsFile {
                    what,
                    path: path.to_string(),
                    source,
                })
            };
            let ca = if t.root_ca.is_empty() {
                // rumqttc wants a CA: the system's bundle (Debian and Yocto path).
                read("system CA bundle", "/etc/ssl/certs/ca-certificates.crt")?
            } else {
                read("connection.transport.root_ca", &t.root_ca)?
            };
            let client_auth = match (t.client_cert.is_empty(), t.client_key.is_empty()) {
                (true, true) => None,
                (false, false) => Some((
                    read("connection.transport.client_cert", &t.client_cert)?,
                    read("connection.transport.client_key", &t.client_key)?,
                )),
                _ => return Err(MqttError::ClientAuth),
            };
            options.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }));
        }
        Ok(options)
    }

    /// A consumer: it hears connection changes at once, and the messages of the filters it
    /// subscribes to. Synchronous, so consumers register before the first ConnAck.
    pub fn consumer(&self, capacity: usize) -> (Consumer, mpsc::Receiver<Incoming>) {
        let (to, rx) = mpsc::channel(capacity);
        lock(&self.listeners).push(to.clone());
        (Consumer { to }, rx)
    }

    /// Routes messages matching `filter` to `consumer`; subscribed on every ConnAck, and at
    /// once when connected.
    pub fn subscribe(&self, consumer: &Consumer, filter: &str) {
        lock(&self.routes).push(Route {
            filter: filter.to_string(),
            to: consumer.to.clone(),
        });
        if self.is_connected() {
            if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                log::warn!("mqtt subscribe {filter}: {e}");
            }
        }
    }

    /// Drops the routes of `filter` and unsubscribes it.
    pub fn unsubscribe(&self, filter: &str) {
        lock(&self.routes).retain(|r| r.filter != filter);
        if self.is_connected() {
            if let Err(e) = self.client.try_unsubscribe(filter) {
                log::warn!("mqtt unsubscribe {filter}: {e}");
            }
        }
    }

    /// A consumer subscribed to `filters`.
    pub fn routes(&self, filters: &[&str], capacity: usize) -> mpsc::Receiver<Incoming> {
        let (consumer, rx) = self.consumer(capacity);
        for f in filters {
            self.subscribe(&consumer, f);
        }
        rx
    }

    /// While the returned guard lives, the event loop does not disconnect at shutdown
    /// (within `DRAIN`): what its holder publishes meanwhile still goes out.
    pub fn publisher(&self) -> Publisher {
        self.publishers.0.fetch_add(1, Ordering::SeqCst);
        Publisher(self.publishers.clone())
    }

    /// At shutdown: keeps polling while publishers remain (within `DRAIN`), then
    /// disconnects after what they queued, so their last messages reach the broker.
    async fn drain(&self, events: &mut EventLoop) {
        let deadline = tokio::time::Instant::now() + DRAIN;
        let (count, changed) = &*self.publishers;
        loop {
            let waiting = changed.notified();
            if count.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::select! {
                () = waiting => {}
                e = events.poll() => if e.is_err() {
                    // Nothing can be sent now; the broker keeps the session.
                    return;
                },
                () = tokio::time::sleep_until(deadline) => {
                    log::warn!("mqtt: publishers still busy {DRAIN:?} after shutdown began; disconnecting");
                    break;
                }
            }
        }
        // The DISCONNECT goes out after every publish queued before it.
        if self.client.try_disconnect().is_err() {
            return;
        }
        let bound = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                e = events.poll() => match e {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                },
                () = tokio::time::sleep_until(bound) => return,
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// QoS 1. Queued (up to `QUEUE` messages, also while disconnected: rumqttc sends them
    /// once the broker is back); never waits, so no loop of the daemon stalls behind the
    /// broker. A message the full queue cannot take comes back in `MqttError::QueueFull`
    /// (with the drops counted): the twin and the current state are published whole again on
    /// reconnect, the update agent keeps its feedback and sends it later.
    pub fn publish(&self, topic: &str, retain: bool, payload: Vec<u8>) -> Result<(), MqttError> {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => Ok(()),
            Err(rumqttc::ClientError::TryRequest(request)) => {
                let n = self.dropped.fetch_add(1, Ordering::SeqCst) + 1;
                let payload = match request {
                    rumqttc::Request::Publish(p) => p.payload.to_vec(),
                    _ => Vec::new(),
                };
                Err(MqttError::QueueFull {
                    topic: topic.to_string(),
                    payload,
                    dropped: n,
                })
            }
            Err(e) => Err(MqttError::Publish {
                topic: topic.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Acknowledges a message once the consumer has taken it over.
    pub async fn ack(&self, message: &Message) {
        if let Some(p) = &message.ack {
            if let Err(e) = self.client.ack(p).await {
                log::debug!("mqtt ack on {}: {e}", message.topic);
            }
        }
    }

    /// One SUBSCRIBE for every route; never waits (the event loop calls it).
    fn resubscribe(&self) {
        let mut filters: Vec<String> = lock(&self.routes)
            .iter()
            .map(|r| r.filter.clone())
            .collect();
        filters.sort_unstable();
        filters.dedup();
        if filters.is_empty() {
            return;
        }
        let all = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        if let Err(e) = self.client.try_subscribe_many(all) {
            log::warn!("mqtt subscribe {}: {e}", filters.join(", "));
        }
    }

    /// Never waits for a consumer: a connection change a full consumer misses is harmless
    /// (the next one says the same).
    fn tell_all(&self, event: Incoming) {
        let listeners: Vec<_> = lock(&self.listeners).clone();
        for l in listeners {
            let _ = l.try_send(event.clone());
        }
    }

    /// Hands a message to the consumers whose filter matches, never waiting for them. A
    /// message nobody can take now stays unacknowledged: the broker delivers it again on the
    /// next connection.
    fn route(&self, publish: Publish) {
        let topic = publish.topic.clone();
        let to: Vec<_> = lock(&self.routes)
            .iter()
            .filter(|r| topic_matches(&r.filter, &topic))
            .map(|r| r.to.clone())
            .collect();
        if to.is_empty() {
            // Nobody wants it (e.g. an old subscription of the persistent session). Never
            // `ack().await` here: the request queue it waits on is drained by this very loop.
            if let Err(e) = self.client.try_ack(&publish) {
                log::warn!("mqtt ack on {topic} not queued: {e}");
            }
            return;
        }
        let message = Message {
            topic,
            payload: publish.payload.clone(),
            ack: Some(publish),
        };
        let mut delivered = false;
        for t in &to {
            let mut m = message.clone();
            if delivered {
                m.ack = None; // one acknowledgement
            }
            match t.try_send(Incoming::Message(m)) {
                Ok(()) => delivered = true,
                Err(_) => log::warn!(
                    "mqtt message on {} not taken (consumer busy); the broker will deliver it again",
                    message.topic
                ),
            }
        }
    }

    /// The connection task: polls the event loop, renews subscriptions on ConnAck, routes
    /// messages, backs off while the broker is away, disconnects on shutdown.
    pub async fn event_loop(
        self,
        mut events: EventLoop,
        broker: String,
        mut shutdown: Shutdown,
        mut pulse: Pulse,
    ) -> TaskResult {
        let mut backoff = Duration::from_millis(250);
        let mut connected = false;
        // The first failure to connect is a warning (often a configuration error), the
        // retries are debug lines.
        let mut warned = false;
        loop {
            pulse.beat();
            // The poll is never cancelled by the pulse (a connect or a large read takes
            // longer than a tick); while it waits the loop beats, and what it then does with
            // the event is what a stall would stop.
            let event = {
                let poll = events.poll();
                tokio::pin!(poll);
                loop {
                    tokio::select! {
                        _ = shutdown.wait() => break None,
                        e = &mut poll => break Some(e),
                        p = pulse.wait() => pulse.handle(p).await,
                    }
                }
            };
            let Some(event) = event else {
                if connected {
                    self.drain(&mut events).await;
                }
                return Ok(());
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        log::warn!(
                            "mqtt broker {broker} refused the connection: {:?}",
                            ack.code
                        );
                        continue;
                    }
                    log::info!(
                        "connected to mqtt broker {broker} (session present: {})",
                        ack.session_present
                    );
                    backoff = Duration::from_millis(250);
                    connected = true;
                    warned = false;
                    self.connected.store(true, Ordering::SeqCst);
                    self.resubscribe();
                    self.tell_all(Incoming::Connected {
                        session_present: ack.session_present,
                    });
                }
                Ok(Event::Incoming(Packet::Publish(p))) => self.route(p),
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        log::warn!("mqtt connection to {broker} lost: {e}; reconnecting");
                        connected = false;
                        self.connected.store(false, Ordering::SeqCst);
                        self.tell_all(Incoming::Disconnected);
                    } else if !warned {
                        log::warn!("cannot connect to mqtt broker {broker}: {e}; retrying");
                        warned = true;
                    } else {
                        log::debug!("mqtt broker {broker} not reachable: {e}");
                    }
                    if !pulse.sleep(backoff, &mut shutdown).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a/b/c", true),
            ("a/#", "a", true),
            (
                "command//+/req/#",
                "command//ns:dev:edge:containers/req/1/start",
                true,
            ),
            (
                "containersupdate/desiredstate",
                "containersupdate/desiredstate/command",
                false,
            ),
            ("#", "anything/at/all", true),
        ];
        for (f, t, want) in cases {
            assert_eq!(topic_matches(f, t), want, "{f} {t}");
        }
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("tcp://localhost:1883").unwrap(),
            ("localhost".into(), 1883, false)
        );
        assert_eq!(
            parse_broker_url("ssl://broker.example:8884").unwrap(),
            ("broker.example".into(), 8884, true)
        );
        assert_eq!(
            parse_broker_url("mqtts://b").unwrap(),
            ("b".into(), 8883, true)
        );
        assert_eq!(
            parse_broker_url("tcp://[::1]:1883").unwrap(),
            ("::1".into(), 1883, false)
        );
        for bad in [
            "localhost:1883",
            "http://x:1",
            "tcp://:1883",
            "tcp://h:port",
        ] {
            assert!(parse_broker_url(bad).is_err(), "{bad}");
        }
    }
}
