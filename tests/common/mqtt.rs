//! MQTT for the agent's integration tests: a mosquitto broker of the test's own (started by
//! the harness's lib.sh, stopped by PID), and a peer that plays the cloud side: it publishes
//! desired states and commands and records everything it hears. Every message it hears on
//! the twin's topics is checked against the rules of Ditto's protocol schemas
//! (`ditto_schema`): a peer that heard one that breaks them fails its test when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use super::Harness;

#[path = "ditto_schema.rs"]
pub mod ditto_schema;

/// A broker for one test, so that tests running at once never see each other's messages.
pub struct Broker {
    harness: Harness,
    dir: PathBuf,
    pub port: u16,
}

impl Broker {
    pub fn start(harness: &Harness, dir: &Path) -> Broker {
        Broker::start_with(harness, dir, "")
    }

    fn start_with(harness: &Harness, dir: &Path, extra: &str) -> Broker {
        let dir = dir.join("mosquitto");
        let port = free_port();
        harness.lib(&format!(
            "harness_start_mosquitto '{}' {port} \"$(printf '{extra}')\"",
            dir.display()
        ));
        Broker {
            harness: harness.clone(),
            dir,
            port,
        }
    }

    /// A broker with a second listener on TLS that requires a client certificate; returns
    /// it with the TLS port and the PEM files (CA, client certificate and key) in `dir`.
    pub fn start_tls(harness: &Harness, dir: &Path) -> (Broker, u16, TlsFiles) {
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let script = format!(
            r#"set -e; cd '{}'
key() {{ openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "$@" 2>/dev/null; }}
key -x509 -keyout ca.key -out ca.pem -days 2 -subj /CN=leda-cm-test-ca
for who in server client; do
  key -keyout $who.key -out $who.csr -subj /CN=$who
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2     -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1') 2>/dev/null
done"#,
            tls.display()
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tls_port = free_port();
        let extra = format!(
            "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true",
            tls.display()
        );
        let broker = Broker::start_with(harness, dir, &extra);
        let files = TlsFiles {
            ca: tls.join("ca.pem"),
            cert: tls.join("client.pem"),
            key: tls.join("client.key"),
        };
        (broker, tls_port, files)
    }

    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP (`true`) or SIGCONT the broker: a stopped broker keeps its connections and
    /// takes nothing from them.
    pub fn freeze(&self, frozen: bool) {
        let pid: i32 = std::fs::read_to_string(self.dir.join("mosquitto.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let pid = self.dir.join("mosquitto.pid");
        self.harness
            .lib(&format!("kill_pid \"$(cat '{}')\"", pid.display()));
    }
}

pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Debug, Clone)]
pub struct Heard {
    pub topic: String,
    pub payload: Vec<u8>,
    pub json: Option<Value>,
    pub retained: bool,
    pub at: Instant,
}

/// The cloud side of the conversation.
pub struct Peer {
    client: Client,
    heard: Arc<Mutex<Vec<Heard>>>,
    /// PUBACKs from the broker: each says it took one of our QoS 1 messages over.
    pubacks: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    /// Messages on the twin's topics that break Ditto's protocol schemas.
    violations: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    /// Connects and subscribes to `filters`; returns once the broker confirmed them.
    pub fn connect(port: u16, filters: &[&str]) -> Peer {
        Peer::connect_as(port, filters, None)
    }

    /// [`Peer::connect`] with a user name and password.
    pub fn connect_as(port: u16, filters: &[&str], credentials: Option<(&str, &str)>) -> Peer {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "test-peer-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        // It hears what it subscribed to, the tests' oversized messages too: MQTT's limit.
        options.set_max_packet_size(268_435_455, 1 << 20);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, 64);
        let heard: Arc<Mutex<Vec<Heard>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let subacks = Arc::new(AtomicU32::new(0));
        let pubacks = Arc::new(AtomicU32::new(0));
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let (heard, stop, subacks, pubacks, violations) = (
                heard.clone(),
                stop.clone(),
                subacks.clone(),
                pubacks.clone(),
                violations.clone(),
            );
            std::thread::spawn(move || {
                for event in connection.iter() {
                    match event {
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if let Err(v) = ditto_schema::check(&p.topic, &p.payload) {
                                violations.lock().unwrap().push(format!(
                                    "{}: {v:?} in {}",
                                    p.topic,
                                    String::from_utf8_lossy(&p.payload)
                                ));
                            }
                            heard.lock().unwrap().push(Heard {
                                topic: p.topic.clone(),
                                json: serde_json::from_slice(&p.payload).ok(),
                                payload: p.payload.to_vec(),
                                retained: p.retain,
                                at: Instant::now(),
                            });
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            subacks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            pubacks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) if stop.load(Ordering::SeqCst) => return,
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            });
        }
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while subacks.load(Ordering::SeqCst) < filters.len() as u32 {
            assert!(
                Instant::now() < deadline,
                "the broker did not confirm {filters:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Peer {
            client,
            heard,
            pubacks,
            stop,
            violations,
        }
    }

    /// The messages heard so far on the twin's topics that break Ditto's protocol schemas.
    pub fn schema_violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    /// Fails unless every twin message heard so far keeps Ditto's protocol schemas; returns
    /// how many twin messages were checked.
    pub fn assert_ditto_valid(&self) -> usize {
        let bad = self.schema_violations();
        assert!(
            bad.is_empty(),
            "messages against Ditto's schemas:\n{}",
            bad.join("\n")
        );
        self.heard()
            .iter()
            .filter(|h| h.topic.starts_with("e/") || h.topic.contains("/res/"))
            .count()
    }

    pub fn publish_raw(&self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .unwrap();
    }

    pub fn publish(&self, topic: &str, payload: &Value) {
        self.publish_raw(topic, &serde_json::to_vec(payload).unwrap());
    }

    /// Publishes and returns once the broker acknowledged it (its PUBACK: the broker has
    /// queued it for every subscriber, the offline persistent sessions too). Publish nothing
    /// else on this peer meanwhile: PUBACKs are counted, not matched.
    pub fn publish_confirmed(&self, topic: &str, payload: &Value) {
        let before = self.pubacks.load(Ordering::SeqCst);
        self.publish(topic, payload);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.pubacks.load(Ordering::SeqCst) == before {
            assert!(
                Instant::now() < deadline,
                "the broker did not acknowledge a message on {topic}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }

    /// Waits for a message on `topic` that `pred` accepts.
    pub fn wait(
        &self,
        topic: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Heard> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(h) = self
                .heard()
                .into_iter()
                .find(|h| h.topic == topic && h.json.as_ref().is_some_and(&pred))
            {
                return Some(h);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.client.disconnect();
        let bad = self.schema_violations();
        if !bad.is_empty() && !std::thread::panicking() {
            panic!(
                "the daemon published {} message(s) against Ditto's protocol schemas:\n{}",
                bad.len(),
                bad.join("\n")
            );
        }
    }
}

/// Publishes the file `payload` on `topic` (QoS 1) with mosquitto's own client, as any other
/// client of the broker would (also past rumqttc's packet limit); panics when it fails.
pub fn mosquitto_pub(port: u16, topic: &str, payload: &Path) {
    let out = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-f",
        ])
        .arg(payload)
        .output()
        .unwrap();
    assert!(out.status.success(), "mosquitto_pub: {out:?}");
}
