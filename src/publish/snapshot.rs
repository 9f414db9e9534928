//! MQTT snapshots (`snapshot = true`): a JPEG of the frame on `{prefix}/{camera}/snapshot`
//! (retained, raw bytes) once when the camera starts publishing them and whenever one of
//! its streams' debounced label changes, never on a labels topic.
//!
//! The publisher thread only decides: the frame is the camera's [`Shot`] (kept because
//! snapshots keep the camera's frames, see [`crate::monitor::frames`]), and the scaling
//! and encoding happen on a thread of their own ([`Encoder`]), so a 20 ms encode never
//! holds up a label message. The encoder takes the latest request per camera, in order,
//! and shares the shot's JPEG cache with viewers asking for the same size and quality.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::cameras::Cam;
use super::shared::Shared;
use super::stage::Session;
use super::{debounce, topics, Publisher};
use crate::metrics::Metrics;
use crate::monitor::frames::{JpegKey, Shot};

/// Requests waiting for the encoder, at most (label changes are rare; a burst beyond
/// this drops the oldest request of the burst, and the camera's next change sends again).
const WAITING: usize = 64;

/// One snapshot to encode and queue.
struct Job {
    topic: String,
    shot: Arc<Shot>,
    key: JpegKey,
}

/// The encoder thread and the way to it.
pub(super) struct Encoder {
    tx: Sender<Job>,
    thread: JoinHandle<()>,
}

impl Encoder {
    fn spawn(shared: Arc<Shared>, metrics: Arc<Metrics>) -> std::io::Result<Encoder> {
        let (tx, rx) = crossbeam_channel::bounded(WAITING);
        let thread = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || encode_all(&rx, &shared, &metrics))?;
        Ok(Encoder { tx, thread })
    }

    /// Encodes what was asked for and stops (at shutdown, before the outbox drains).
    pub(super) fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// The encoder thread: each request (the latest per topic when several wait) encoded and
/// queued as a retained message, until the publisher hangs up.
fn encode_all(rx: &Receiver<Job>, shared: &Shared, metrics: &Metrics) {
    while let Ok(first) = rx.recv() {
        let mut jobs = VecDeque::from([first]);
        jobs.extend(rx.try_iter());
        while let Some(job) = jobs.pop_front() {
            if jobs.iter().any(|j| j.topic == job.topic) {
                continue;
            }
            match job.shot.render(job.key, None, &metrics.jpeg_encode_seconds) {
                Ok(bytes) => {
                    metrics.snapshots.inc();
                    shared
                        .outbox()
                        .push_urgent(topics::retained(job.topic, bytes.to_vec()));
                    shared.changed();
                }
                Err(e) => {
                    tracing::error!(topic = %job.topic, error = %e, "cannot encode a snapshot")
                }
            }
        }
    }
}

impl Publisher {
    /// After camera `cam`'s frame `frame` was recorded with top-1 `top1` on stream
    /// `region` (`None`: the whole frame): follows the camera's snapshot setting (a reload
    /// may change it) and asks for a snapshot when one is due and the frame is kept.
    pub(super) fn snapshot(
        &self,
        s: &mut Session,
        cam: usize,
        frame: u64,
        region: Option<&str>,
        top1: Option<usize>,
    ) {
        let spec = self.monitor.frames.snapshot(cam);
        let Some(state) = s.cams.get_mut(cam) else {
            return;
        };
        if spec != state.snapshot {
            self.snapshot_changed(&s.shared, state, spec);
        }
        let Some(key) = spec else { return };
        let stream = match region {
            None => &mut state.whole,
            Some(name) => match state.regions.get_mut(name) {
                Some(stream) => stream,
                None => return,
            },
        };
        let (hold, window) = self.mqtt.label_debounce.unwrap_or((1, 1));
        let shots = stream
            .shots
            .get_or_insert_with(|| debounce::Debouncer::new(hold, window));
        if top1.and_then(|t| shots.push(t)).is_some() {
            state.snapshot_due = true;
        }
        if !state.snapshot_due {
            return;
        }
        // Only the frame just classified: a later one may not have its label yet.
        let Some(shot) = self.monitor.frames.shot(cam).filter(|s| s.frame == frame) else {
            return;
        };
        let key = JpegKey {
            height: key.height.filter(|&h| h < shot.size().1),
            ..key
        };
        if s.snapshots.is_none() {
            match Encoder::spawn(s.shared.clone(), self.metrics.clone()) {
                Ok(e) => s.snapshots = Some(e),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the snapshot encoder");
                    return;
                }
            }
        }
        let job = Job {
            topic: self.topics.snapshot(&state.id),
            shot,
            key,
        };
        if let Some(encoder) = &s.snapshots {
            if encoder.tx.try_send(job).is_ok() {
                state.snapshot_due = false;
            }
        }
    }

    /// Camera `state` starts or stops publishing snapshots, or changes their size: the
    /// next kept frame is sent; Home Assistant gets or loses its image entity; stopping
    /// clears the retained snapshot.
    fn snapshot_changed(&self, shared: &Shared, state: &mut Cam, spec: Option<JpegKey>) {
        let was = std::mem::replace(&mut state.snapshot, spec);
        state.snapshot_due = spec.is_some();
        let id = state.id.to_string();
        let mut discovery = shared.discovery();
        let live =
            shared.connected.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst);
        let mut outbox = shared.outbox();
        if spec.is_none() {
            for stream in std::iter::once(&mut state.whole).chain(state.regions.values_mut()) {
                stream.shots = None;
            }
            if was.is_some() {
                outbox.push_urgent(topics::cleared(self.topics.snapshot(&id)));
            }
        }
        if let Some(d) = discovery.as_mut() {
            let announced = d.snapshots.contains(&id);
            if spec.is_some() && !announced {
                d.snapshots.push(id.clone());
                if live {
                    outbox.push_urgent(d.image_message(&id));
                }
            } else if spec.is_none() && announced {
                d.snapshots.retain(|c| *c != id);
                outbox.push_urgent(topics::cleared(d.image_topic(&id)));
            }
        }
        drop(outbox);
        drop(discovery);
        shared.changed();
    }
}
