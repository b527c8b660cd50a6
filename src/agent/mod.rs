//! The Container Update Agent: desired states in over MQTT, converged containers out, with
//! feedback and the current state (inventory).
//!
//! Two ways to drive it, one code path: **standalone** (default) runs download, update,
//! activate and cleanup itself after identification; **orchestrated** (Kanto
//! update-manager's flow, `update_agent.mode: "orchestrated"`) waits for the DOWNLOAD /
//! UPDATE / ACTIVATE / ROLLBACK / CLEANUP commands and enforces their order.
//!
//! A desired state is written to the state dir before it is acknowledged to the broker and
//! removed when its operation ends; after a crash or reboot the agent applies it again
//! (identification runs against what exists, so the steps already done are found done).
//! A desired state arriving during an apply supersedes it: the step in hand finishes, the
//! old activity is reported SUPERSEDED, the new one runs.

pub mod desired;
pub mod diff;
pub mod inventory;
pub mod messages;
pub mod operation;
pub mod overlap;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::manager::{Change, Manager};
use crate::mqtt::{Incoming, Mqtt, MqttError};
use crate::runtime::Runtime;
use crate::store;
use crate::supervisor::{Pulse, Shutdown, TaskResult};
use messages::{status, DesiredState, DesiredStateCommand, Envelope, Feedback, Topics};
use operation::{Ctx, Operation, Outcome, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Orchestrated,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: String,
    pub system_containers: Vec<String>,
    pub verbose_inventory: bool,
    pub mode: Mode,
    pub state_dir: PathBuf,
    /// What a desired state may ask for (`remote_requests`).
    pub remote: crate::config::RemoteRequestsConfig,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The desired state being applied, as persisted (`<state>/update-agent/desired-state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    version: u32,
    activity_id: String,
    /// Which acceptance this is, within one run of the daemon (rewritten on resume), so that
    /// the end of an older apply of the same activity does not remove a newer one.
    #[serde(default)]
    generation: u64,
    desired_state: DesiredState,
}

/// How long the step in hand gets at shutdown (within the daemon's grace).
const RUNNER_STOP: Duration = Duration::from_secs(8);

const PENDING_FILE: &str = "update-agent/desired-state.json";

/// Work for the runner, in order.
enum Job {
    Apply {
        activity_id: String,
        desired: DesiredState,
        resumed: bool,
        generation: u64,
    },
    Command {
        activity_id: String,
        command: DesiredStateCommand,
    },
}

/// What the runner hands the publishing loop, in order.
enum Out {
    Feedback(String, Feedback),
    /// The operation (activity, generation) has sent its last feedback.
    Finished(String, u64),
}

struct Shared<R: Runtime> {
    settings: Settings,
    manager: Arc<Manager<R>>,
    mqtt: Mqtt,
    topics: Topics,
    /// Bumped for every accepted desired state: an older apply sees it and stops.
    generation: AtomicU64,
    /// Set at shutdown: the apply in hand stops at the next phase boundary and stays
    /// persisted, to be resumed at the next start.
    stopping: AtomicBool,
    feedback: mpsc::UnboundedSender<Out>,
    /// What the full outgoing queue could not take while the broker was away, in order:
    /// feedback and the end of operations behind it (see `deliver`).
    held: Mutex<heapless::Deque<Held, HELD>>,
}

/// Feedback kept while the outgoing queue is full (a long broker outage): ~30 operations'
/// worth. Beyond it the oldest goes (counted); the operation's persisted desired state is
/// not removed before its feedback is out, so a restart still resumes and reports it.
const HELD: usize = 512;

enum Held {
    /// An encoded feedback message (for the feedback topic).
    Feedback(Vec<u8>),
    Finished(String, u64),
}

impl<R: Runtime> Shared<R> {
    fn pending_path(&self) -> PathBuf {
        self.settings.state_dir.join(PENDING_FILE)
    }

    /// Written on the blocking pool (its fsyncs never stall the runtime's thread).
    async fn persist(
        &self,
        activity_id: &str,
        generation: u64,
        desired: &DesiredState,
    ) -> Result<(), store::StoreError> {
        let path = self.pending_path();
        let p = Pending {
            version: 1,
            activity_id: activity_id.into(),
            generation,
            desired_state: desired.clone(),
        };
        let at = path.clone();
        store::off_thread(path, move || {
            if let Some(dir) = at.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            store::write_json_atomic(&at, &p, 0o600)
        })
        .await
    }

    /// The operation ended: its desired state is un-persisted once every feedback before
    /// this has been handed to the broker connection (in order, by the publishing loop), so
    /// a crash or SIGTERM before that resumes it at the next start and the final feedback
    /// is sent then.
    fn finished(&self, activity_id: &str, generation: u64) {
        let _ = self
            .feedback
            .send(Out::Finished(activity_id.to_string(), generation));
    }

    fn unpersist(&self, activity_id: &str, generation: u64) {
        let path = self.pending_path();
        if let Ok(Some(p)) = store::read_json::<Pending>(&path) {
            if p.activity_id == activity_id && p.generation == generation {
                let _ = store::remove_durably(&path);
            }
        }
    }

    fn send(&self, activity_id: &str, fb: Feedback) {
        let _ = self
            .feedback
            .send(Out::Feedback(activity_id.to_string(), fb));
    }

    /// Publishes a feedback, or un-persists a finished operation (in the order sent). What
    /// the full outgoing queue cannot take is held, in order, and sent by `flush_held` (on
    /// reconnect and every debounce tick); an operation's end waits behind its feedback.
    async fn deliver(&self, out: Out) {
        self.flush_held();
        let held = match out {
            Out::Feedback(activity, fb) => {
                let Some(payload) = envelope_bytes(&self.topics.feedback, &activity, fb) else {
                    return;
                };
                Held::Feedback(payload)
            }
            Out::Finished(activity, generation) => Held::Finished(activity, generation),
        };
        // Behind what is held already, so the order stays.
        let waiting = !lock(&self.held).is_empty();
        let back = if waiting {
            Some(held)
        } else {
            self.send_held(held)
        };
        if let Some(back) = back {
            self.hold(back);
        }
    }

    /// Keeps `held` at the back; when full, the oldest goes (a dropped end of an operation
    /// leaves its desired state persisted: resumed and reported at the next start).
    fn hold(&self, held: Held) {
        let mut queue = lock(&self.held);
        if queue.is_empty() {
            log::warn!(
                "the outgoing mqtt queue is full (the broker takes nothing): feedback is held until it does"
            );
        }
        if queue.is_full() {
            queue.pop_front();
            log::error!("{HELD} messages wait for the broker; the oldest is dropped");
        }
        let _ = queue.push_back(held);
    }

    /// Sends what is held, in order, while the outgoing queue takes it.
    fn flush_held(&self) {
        let mut sent = 0;
        loop {
            let Some(next) = lock(&self.held).pop_front() else {
                if sent > 0 {
                    log::info!("{sent} held feedback messages handed to the broker connection");
                }
                return;
            };
            if let Some(back) = self.send_held(next) {
                let mut queue = lock(&self.held);
                // It was the front: it goes back there (room: it was just taken out).
                let _ = queue.push_front(back);
                return;
            }
            sent += 1;
        }
    }

    /// Sends one held item; gives it back when the outgoing queue is still full.
    fn send_held(&self, held: Held) -> Option<Held> {
        match held {
            Held::Finished(activity, generation) => {
                self.unpersist(&activity, generation);
                None
            }
            Held::Feedback(payload) => {
                match self.mqtt.publish(&self.topics.feedback, false, payload) {
                    Ok(()) => None,
                    Err(MqttError::QueueFull { payload, .. }) => Some(Held::Feedback(payload)),
                    Err(e) => {
                        log::warn!("{e}");
                        None
                    }
                }
            }
        }
    }

    async fn publish_current_state(&self, activity_id: &str) {
        let inv = inventory::inventory(
            &self.settings.domain,
            env!("CARGO_PKG_VERSION"),
            &self.manager.list(),
            self.settings.verbose_inventory,
        );
        self.publish(&self.topics.current_state, true, activity_id, inv)
            .await;
    }

    /// Publishes `payload` in Kanto's envelope; a failure is logged (the broker may be away).
    async fn publish<T: Serialize>(
        &self,
        topic: &str,
        retain: bool,
        activity_id: &str,
        payload: T,
    ) {
        if let Some(bytes) = envelope_bytes(topic, activity_id, payload) {
            if let Err(e) = self.mqtt.publish(topic, retain, bytes) {
                log::warn!("{e}");
            }
        }
    }
}

/// `payload` in Kanto's envelope, encoded (an encoding error is logged: `None`).
fn envelope_bytes<T: Serialize>(topic: &str, activity_id: &str, payload: T) -> Option<Vec<u8>> {
    let env = Envelope {
        activity_id: activity_id.to_string(),
        timestamp: now_ms(),
        payload,
    };
    serde_json::to_vec(&env)
        .map_err(|e| log::error!("encoding a message for {topic}: {e}"))
        .ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The agent: its subscriptions are registered when it is made (before the connection's
/// first ConnAck), its loop runs as a supervised task.
pub struct Agent<R: Runtime> {
    shared: Arc<Shared<R>>,
    inbound: mpsc::Receiver<Incoming>,
    feedback: mpsc::UnboundedReceiver<Out>,
}

impl<R: Runtime> Agent<R> {
    pub fn new(settings: Settings, manager: Arc<Manager<R>>, mqtt: Mqtt) -> Agent<R> {
        let topics = Topics::for_domain(&settings.domain);
        let (fb_tx, feedback) = mpsc::unbounded_channel::<Out>();
        let inbound = mqtt.routes(
            &[
                &topics.desired_state,
                &topics.desired_state_command,
                &topics.current_state_get,
            ],
            64,
        );
        let shared = Arc::new(Shared {
            settings,
            manager,
            mqtt,
            topics,
            generation: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            feedback: fb_tx,
            held: Mutex::new(heapless::Deque::new()),
        });
        Agent {
            shared,
            inbound,
            feedback,
        }
    }

    /// The agent task: takes messages in at once (desired states are persisted and queued),
    /// runs operations only once the manager has restored its containers, publishes feedback
    /// and the current state.
    pub async fn run(self, mut shutdown: Shutdown, mut pulse: Pulse) -> TaskResult {
        let Agent {
            shared,
            mut inbound,
            feedback: mut fb_rx,
        } = self;
        // Held until the last feedback is handed over: the connection stays up for it.
        let publishing = shared.mqtt.publisher();
        let topics = shared.topics.clone();
        let manager = shared.manager.clone();
        let (job_tx, job_rx) = mpsc::unbounded_channel::<Job>();
        let runner = tokio::spawn(runner(shared.clone(), job_rx));

        // A desired state left from before a crash or reboot is applied again.
        match store::read_json::<Pending>(&shared.pending_path()) {
            Ok(Some(p)) => {
                log::info!("resuming desired state {} after a restart", p.activity_id);
                enqueue(&shared, &job_tx, p.activity_id, p.desired_state, true).await;
            }
            Ok(None) => {}
            Err(e) => log::error!("the persisted desired state is unreadable, ignored: {e}"),
        }

        let mut restored = Box::pin(manager.wait_restored());
        let mut is_restored = false;
        // Current-state requests that wait for the restore (activity IDs).
        let mut owed: Vec<String> = Vec::new();
        let mut changes = manager.subscribe();
        let mut dirty = false;
        let mut debounce = tokio::time::interval(Duration::from_millis(300));
        debounce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            pulse.beat();
            tokio::select! {
                _ = shutdown.wait() => break,
                p = pulse.wait() => pulse.handle(p).await,
                () = &mut restored, if !is_restored => {
                    is_restored = true;
                    for activity in owed.drain(..) {
                        shared.publish_current_state(&activity).await;
                    }
                }
                Some(out) = fb_rx.recv() => shared.deliver(out).await,
                Some(incoming) = inbound.recv() => match incoming {
                    Incoming::Connected { .. } => {
                        shared.flush_held();
                        let activity = format!("initial-current-state-{}", now_ms());
                        if is_restored {
                            shared.publish_current_state(&activity).await;
                        } else {
                            owed.push(activity);
                        }
                    }
                    Incoming::Disconnected => {}
                    Incoming::Message(m) => {
                        if m.topic == topics.desired_state {
                            accept_desired_state(&shared, &job_tx, &m.payload).await;
                        } else if m.payload.len() > MAX_MESSAGE_BYTES {
                            log::warn!(
                                "ignoring a message of {} bytes on {} (at most {MAX_MESSAGE_BYTES})",
                                m.payload.len(),
                                m.topic
                            );
                        } else if m.topic == topics.desired_state_command {
                            match serde_json::from_slice::<Envelope<DesiredStateCommand>>(&m.payload) {
                                Ok(env) => {
                                    let _ = job_tx.send(Job::Command { activity_id: env.activity_id, command: env.payload });
                                }
                                Err(e) => log::warn!("ignoring a desired state command that is not valid: {e}"),
                            }
                        } else if m.topic == topics.current_state_get {
                            let activity = activity_of(&m.payload);
                            if is_restored {
                                shared.publish_current_state(&activity).await;
                            } else {
                                owed.push(activity);
                            }
                        }
                        shared.mqtt.ack(&m).await;
                    }
                },
                change = changes.recv() => {
                    match change {
                        Ok(Change::Created(_) | Change::Updated(_) | Change::Removed(_)) => dirty = true,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => dirty = true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
                    }
                }
                _ = debounce.tick() => {
                    shared.flush_held();
                    if dirty && is_restored {
                        dirty = false;
                        shared.publish_current_state(&format!("current-state-{}", now_ms())).await;
                    }
                }
            }
        }
        // The apply in hand finishes its step and stays persisted; queued jobs are left.
        shared.stopping.store(true, Ordering::SeqCst);
        drop(job_tx);
        // Meanwhile, and after it, the feedback of that step is still published (the mqtt
        // task waits for this publisher before it disconnects).
        let deadline = tokio::time::Instant::now() + RUNNER_STOP;
        let mut runner = runner;
        let mut runner_done = false;
        while !runner_done {
            tokio::select! {
                _ = &mut runner => runner_done = true,
                Some(out) = fb_rx.recv() => shared.deliver(out).await,
                () = tokio::time::sleep_until(deadline) => {
                    log::warn!("the update agent did not finish its step within {RUNNER_STOP:?}");
                    break;
                }
            }
        }
        while let Ok(out) = fb_rx.try_recv() {
            shared.deliver(out).await;
        }
        shared.flush_held();
        let held = lock(&shared.held).len();
        if held > 0 {
            log::warn!(
                "{held} feedback messages could not be handed to the broker; the operation stays persisted and is resumed (and reported) at the next start"
            );
        }
        drop(publishing);
        Ok(())
    }
}

/// The largest desired state (or other message) the agent reads: Leda's desired states
/// are a few KiB. A larger one is answered IDENTIFICATION_FAILED, acknowledged and dropped.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The `activityId` of a message, or "" when it has none; reads nothing else of it.
fn activity_of(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Activity {
        #[serde(default, rename = "activityId")]
        activity_id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Activity>(payload) {
        Ok(Activity {
            activity_id: Some(serde_json::Value::String(a)),
        }) => a,
        _ => String::new(),
    }
}

/// Parses and persists a desired state, then hands it to the runner. A message that is not
/// a desired state gets IDENTIFICATION_FAILED (with its activity ID when it has one).
async fn accept_desired_state<R: Runtime>(
    shared: &Shared<R>,
    jobs: &mpsc::UnboundedSender<Job>,
    payload: &[u8],
) {
    if payload.len() > MAX_MESSAGE_BYTES {
        let activity = activity_of(payload);
        let fb = Feedback {
            status: status::IDENTIFICATION_FAILED.into(),
            message: format!(
                "the desired state has {} bytes, more than the {MAX_MESSAGE_BYTES} this device accepts",
                payload.len()
            ),
            ..Default::default()
        };
        log::warn!("desired state {activity:?} rejected: {}", fb.message);
        shared.send(&activity, fb);
        return;
    }
    let env = match serde_json::from_slice::<Envelope<DesiredState>>(payload) {
        Ok(env) => env,
        Err(e) => {
            let activity = activity_of(payload);
            let fb = Feedback {
                status: status::IDENTIFICATION_FAILED.into(),
                message: format!("the desired state is not valid: {e}"),
                ..Default::default()
            };
            log::warn!("desired state {activity:?} rejected: {}", fb.message);
            shared.send(&activity, fb);
            return;
        }
    };
    enqueue(shared, jobs, env.activity_id, env.payload, false).await;
}

/// Takes a desired state over: a new generation (older applies see it and stop), persisted
/// (with that generation) before the runner gets it.
async fn enqueue<R: Runtime>(
    shared: &Shared<R>,
    jobs: &mpsc::UnboundedSender<Job>,
    activity_id: String,
    desired: DesiredState,
    resumed: bool,
) {
    // Persist, then act: a desired state that a crash would lose is refused and changes
    // nothing (the apply in hand goes on: the generation moves only once it is saved).
    let generation = shared.generation.load(Ordering::SeqCst) + 1;
    if let Err(e) = shared.persist(&activity_id, generation, &desired).await {
        log::error!("cannot persist the desired state {activity_id}: {e}");
        if !resumed {
            shared.send(
                &activity_id,
                Feedback {
                    status: status::IDENTIFICATION_FAILED.into(),
                    message: format!("the desired state could not be saved: {e}"),
                    ..Default::default()
                },
            );
            return;
        }
    }
    shared.generation.store(generation, Ordering::SeqCst);
    let _ = jobs.send(Job::Apply {
        activity_id,
        desired,
        resumed,
        generation,
    });
}

/// Runs the jobs one at a time; holds the operation that waits for commands.
async fn runner<R: Runtime>(shared: Arc<Shared<R>>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    // Nothing is diffed against a table that live restore has not confirmed yet.
    tokio::select! {
        () = shared.manager.wait_restored() => {}
        // Shutdown before the restore: the job channel closes.
        () = async { while !jobs.is_closed() { tokio::time::sleep(Duration::from_millis(100)).await } } => return,
    }
    let ctx = Ctx::new(shared.manager.clone());
    let stopping = || shared.stopping.load(Ordering::SeqCst);
    // The orchestrated operation waiting for its commands, with its generation.
    let mut waiting: Option<(Operation, u64)> = None;
    while let Some(job) = jobs.recv().await {
        if stopping() {
            break;
        }
        match job {
            Job::Apply {
                activity_id,
                desired,
                resumed,
                generation,
            } => {
                if shared.generation.load(Ordering::SeqCst) != generation {
                    shared.send(&activity_id, superseded_feedback());
                    shared.finished(&activity_id, generation);
                    continue;
                }
                if let Some((old, old_generation)) = waiting.take() {
                    old.feedback(
                        status::SUPERSEDED,
                        &format!("superseded by desired state {activity_id}"),
                        "",
                    );
                    shared.finished(&old.activity_id, old_generation);
                }
                let started = std::time::Instant::now();
                let identified = identify(&shared, &activity_id, &desired, resumed).await;
                log::debug!(
                    "desired state {activity_id}: identified in {:?}",
                    started.elapsed()
                );
                let Some(mut op) = identified else {
                    shared.finished(&activity_id, generation);
                    continue;
                };
                match shared.settings.mode {
                    Mode::Orchestrated => waiting = Some((op, generation)),
                    Mode::Standalone => {
                        let gen = &shared.generation;
                        let superseded = || stopping() || gen.load(Ordering::SeqCst) != generation;
                        let mut outcome = op.run_standalone(&ctx, &superseded).await;
                        // containerd went away mid-apply (a restart): nothing the desired
                        // state asked for was wrong, so once containerd is back the apply
                        // starts again from what exists (as after a daemon restart).
                        let mut retries = 0;
                        while outcome == Outcome::Unavailable && retries < UNAVAILABLE_RETRIES {
                            retries += 1;
                            log::warn!(
                                "desired state {activity_id}: containerd became unavailable mid-apply; it is applied again once containerd is back"
                            );
                            if !wait_for_containerd(&shared.manager, &superseded).await {
                                outcome = Outcome::Superseded;
                                break;
                            }
                            let Some(again) = identify_noting(
                                &shared,
                                &activity_id,
                                &desired,
                                "resumed after containerd returned",
                            )
                            .await
                            else {
                                outcome = Outcome::Completed;
                                break;
                            };
                            op = again;
                            outcome = op.run_standalone(&ctx, &superseded).await;
                        }
                        if outcome == Outcome::Unavailable {
                            op.give_up(&ctx).await;
                        }
                        if outcome == Outcome::Superseded && stopping() {
                            log::info!(
                                "stopping: desired state {activity_id} is resumed at the next start"
                            );
                            return;
                        }
                        if outcome == Outcome::Superseded {
                            op.feedback(
                                status::SUPERSEDED,
                                "superseded by a newer desired state",
                                "",
                            );
                        }
                        shared.finished(&activity_id, generation);
                    }
                }
            }
            Job::Command {
                activity_id,
                command,
            } => {
                let Some((op, generation)) = waiting.as_mut() else {
                    log::warn!(
                        "ignoring command {} for {activity_id}: no operation waits for commands",
                        command.command
                    );
                    continue;
                };
                if op.activity_id != activity_id {
                    log::warn!(
                        "ignoring command {} for {activity_id}: the operation in progress is {}",
                        command.command,
                        op.activity_id
                    );
                    continue;
                }
                op.run(&ctx, &command.command, &command.baseline).await;
                if op.done {
                    let (id, generation) = (op.activity_id.clone(), *generation);
                    waiting = None;
                    shared.finished(&id, generation);
                }
            }
        }
    }
}

/// How often an apply is run again after containerd went away under it.
const UNAVAILABLE_RETRIES: u32 = 3;
/// How long an apply waits for containerd to return before it gives up.
const CONTAINERD_WAIT: Duration = Duration::from_secs(120);

/// Waits until containerd answers and the manager has reconciled with it again; false when
/// the apply was superseded (or the daemon stops) meanwhile, or containerd stays away.
async fn wait_for_containerd<R: Runtime>(
    manager: &Arc<Manager<R>>,
    superseded: &(dyn Fn() -> bool + Sync),
) -> bool {
    let deadline = tokio::time::Instant::now() + CONTAINERD_WAIT;
    while tokio::time::Instant::now() < deadline {
        if superseded() {
            return false;
        }
        if manager.runtime().list().await.is_ok() {
            // The monitor reconciles when containerd returns: give it its turn, then the
            // apply diffs against what that restore left.
            let _ = manager.reconcile().await;
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    log::warn!("containerd did not return within {CONTAINERD_WAIT:?}");
    true
}

fn superseded_feedback() -> Feedback {
    Feedback {
        status: status::SUPERSEDED.into(),
        message: "superseded by a newer desired state before it started".into(),
        ..Default::default()
    }
}

/// IDENTIFYING → IDENTIFIED (or IDENTIFICATION_FAILED, or COMPLETED when there is nothing
/// to do). Returns the operation when there are actions.
async fn identify<R: Runtime>(
    shared: &Shared<R>,
    activity_id: &str,
    desired: &DesiredState,
    resumed: bool,
) -> Option<Operation> {
    let note = if resumed {
        "resumed after a restart of leda-cm"
    } else {
        ""
    };
    identify_noting(shared, activity_id, desired, note).await
}

async fn identify_noting<R: Runtime>(
    shared: &Shared<R>,
    activity_id: &str,
    desired: &DesiredState,
    note: &str,
) -> Option<Operation> {
    let plain = |status: &str, message: &str| Feedback {
        status: status.into(),
        message: message.into(),
        ..Default::default()
    };
    shared.send(activity_id, plain(status::IDENTIFYING, note));
    let settings = &shared.settings;
    let parsed = match desired::parse_desired(desired, &settings.domain) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("desired state {activity_id} rejected: {e}");
            shared.send(activity_id, plain(status::IDENTIFICATION_FAILED, &e));
            return None;
        }
    };
    // What the policy does not allow a remote request: refused as a whole, nothing changed.
    let refused: Vec<String> = parsed
        .containers
        .iter()
        .flat_map(|(_, c)| crate::model::policy::violations(c, &settings.remote))
        .collect();
    if !refused.is_empty() {
        let e = refused.join("; ");
        log::warn!("desired state {activity_id} rejected: {e}");
        shared.send(activity_id, plain(status::IDENTIFICATION_FAILED, &e));
        return None;
    }
    // Tidy what an interrupted replacement left (idempotent: a resumed apply starts here).
    operation::tidy_leftovers(&shared.manager).await;
    let system = parsed
        .system_containers
        .clone()
        .unwrap_or_else(|| settings.system_containers.clone());
    let mut system: Vec<String> = system;
    // System containers deployed from manifests are never touched either.
    system.extend(
        shared
            .manager
            .list()
            .into_iter()
            .filter(|c| shared.manager.is_system(c))
            .map(|c| c.container_name),
    );
    let current = shared.manager.list();
    let wanted: Vec<_> = parsed.containers.iter().map(|(_, c)| c.clone()).collect();
    // "Image changed": the tag now resolves to another digest than the container runs (one
    // registry request per image name, all at once).
    let running: Vec<(String, String, String)> = wanted
        .iter()
        .filter_map(|d| {
            let c = current
                .iter()
                .find(|c| c.container_name == d.container_name && c.image.name == d.image.name)?;
            let digest = c.extras().image_digest;
            (!digest.is_empty()).then(|| (d.container_name.clone(), d.image.name.clone(), digest))
        })
        .collect();
    let mut images: Vec<&str> = running.iter().map(|(_, image, _)| image.as_str()).collect();
    images.sort_unstable();
    images.dedup();
    let remote =
        futures_util::future::join_all(images.iter().map(|image| async move {
            (*image, shared.manager.runtime().remote_digest(image).await)
        }))
        .await;
    let new_digests: HashSet<String> = running
        .iter()
        .filter(|(_, image, digest)| {
            remote
                .iter()
                .any(|(i, r)| i == image && r.as_ref().is_ok_and(|r| r != digest))
        })
        .map(|(name, _, _)| name.clone())
        .collect();
    let plan = diff::plan(&wanted, &current, &system, &new_digests);
    let versions: Vec<(String, String)> = parsed
        .containers
        .iter()
        .map(|(r, _)| (r.id.clone(), r.version.clone()))
        .collect();
    let version_of = |name: &str| {
        versions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                current
                    .iter()
                    .find(|c| c.container_name == name)
                    .map(|c| inventory::image_version(&c.image.name))
            })
            .unwrap_or_default()
    };
    let feedback = shared.feedback.clone();
    let sink: Sink = Arc::new(move |activity: &str, fb: Feedback| {
        let _ = feedback.send(Out::Feedback(activity.to_string(), fb));
    });
    let mut op = Operation::new(
        activity_id,
        plan,
        &settings.domain,
        &version_of,
        parsed.baselines,
        sink,
    );
    op.note = note.to_string();
    op.feedback(status::IDENTIFIED, note, "");
    if op.is_empty() {
        op.feedback(status::COMPLETED, note, "");
        return None;
    }
    Some(op)
}
