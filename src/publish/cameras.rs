//! The publisher's view of the cameras: the roster it follows on the status board (a
//! camera added by a reload gets its topics and discovery, a removed one has its retained
//! topics cleared), their retained statuses, the periodic stats and the rate check that
//! reports a camera classified below its demand.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::Shared;
use super::{debounce, payload, topics, Publisher};

/// One numbered series of label messages: a camera's whole frame, or one of its regions.
pub(super) struct Stream {
    /// See [`topics::stream`].
    pub(super) key: String,
    pub(super) labels_topic: String,
    pub(super) seq: u64,
    /// With `label_hold`, or Home Assistant (whose label sensor follows it: hold 1).
    pub(super) debouncer: Option<debounce::Debouncer>,
    /// When `{stream}/top5` was last published (Home Assistant only).
    pub(super) top5_at: Option<Instant>,
    /// The debounced label snapshots follow (while the camera publishes them).
    pub(super) shots: Option<debounce::Debouncer>,
}

impl Publisher {
    /// The stream `key`, its `seq` continuing from the spool, if any.
    pub(super) fn stream(&self, key: String, restored_seq: &HashMap<String, u64>) -> Stream {
        Stream {
            labels_topic: self.topics.labels(&key),
            seq: restored_seq.get(&key).copied().unwrap_or(0),
            debouncer: self
                .mqtt
                .label_debounce
                .or(self.ha_attributes.map(|_| (1, 1)))
                .map(|(hold, window)| debounce::Debouncer::new(hold, window)),
            top5_at: None,
            shots: None,
            key,
        }
    }
}

/// What the publisher keeps per camera index (see [`StatusBoard`]): kept when a camera is
/// removed, so one added again continues its `seq`s.
pub(super) struct Cam {
    pub(super) id: Arc<str>,
    /// The whole frame.
    pub(super) whole: Stream,
    /// Regions seen so far, by name.
    pub(super) regions: HashMap<Arc<str>, Stream>,
    pub(super) published: u64,
    /// Status version last published (`u64::MAX`: publish again).
    pub(super) status_seen: u64,
    /// Active as of the last roster check.
    pub(super) active: bool,
    /// `classified` at the last rate measurement.
    pub(super) classified_then: u64,
    /// Classifying well below its demand (the pipeline is at capacity).
    pub(super) degraded: bool,
    /// How its snapshots are encoded, as last seen (see [`super::snapshot`]).
    pub(super) snapshot: Option<crate::monitor::frames::JpegKey>,
    /// A snapshot is owed: sent with the next frame that is kept.
    pub(super) snapshot_due: bool,
}

impl Publisher {
    pub(super) fn publish_stats(&self, shared: &Shared, started: Instant) {
        let active = self.status.active();
        let cams: Vec<(&str, crate::status::CameraStatus)> = active
            .iter()
            .filter_map(|(i, id)| self.status.snapshot(*i).map(|(_, s)| (id.as_ref(), s)))
            .collect();
        let depth = shared.outbox().pending();
        let (server, failovers) = shared.broker();
        let broker = payload::Broker {
            server,
            failovers,
            resent: self.metrics.mqtt_resent.get(),
        };
        let stats = payload::encode_stats(&cams, started.elapsed().as_secs(), depth, &broker);
        shared
            .outbox()
            .push_urgent(topics::retained(self.topics.stats(), stats));
        shared.changed();
    }

    /// Follows cameras added and removed (by a reload) on the status board: a new camera
    /// gets its state here (its `seq` continues from the spool, if any) and its discovery
    /// configs; a removed one has its retained topics cleared so nothing stale remains.
    pub(super) fn sync_roster(
        &self,
        shared: &Shared,
        cams: &mut Vec<Cam>,
        seen: &mut u64,
        restored_seq: &HashMap<String, u64>,
    ) {
        let roster = self.status.roster();
        if roster == *seen {
            return;
        }
        *seen = roster;
        for i in 0..self.status.cameras() {
            if i == cams.len() {
                let Some(id) = self.status.id(i) else { break };
                cams.push(Cam {
                    whole: self.stream(topics::stream(&id, None), restored_seq),
                    regions: HashMap::new(),
                    published: 0,
                    status_seen: u64::MAX,
                    active: false,
                    classified_then: 0,
                    degraded: false,
                    snapshot: None,
                    snapshot_due: false,
                    id,
                });
            }
            let cam = &mut cams[i];
            let active = self.status.is_active(i);
            if active == cam.active {
                continue;
            }
            cam.active = active;
            cam.status_seen = u64::MAX;
            let mut discovery = shared.discovery();
            let mut outbox = shared.outbox();
            if active {
                if let Some(d) = discovery.as_mut() {
                    if !d.cameras.iter().any(|c| c == cam.id.as_ref()) {
                        d.cameras.push(cam.id.to_string());
                    }
                    // Before the first connection, the announcement on connect has it.
                    if shared.connected.load(Ordering::SeqCst)
                        && !shared.stopping.load(Ordering::SeqCst)
                    {
                        for m in d.messages_for(&cam.id) {
                            outbox.push_urgent(m);
                        }
                    }
                }
            } else {
                tracing::info!(camera = %cam.id, "camera removed: clearing its retained topics");
                let mut topics = vec![self.topics.camera_status(&cam.id)];
                if cam.snapshot.take().is_some() {
                    topics.push(self.topics.snapshot(&cam.id));
                }
                let streams = std::iter::once(&cam.whole).chain(cam.regions.values());
                for stream in streams {
                    if stream.debouncer.is_some() {
                        topics.push(self.topics.label(&stream.key));
                    }
                    if stream.top5_at.is_some() {
                        topics.push(self.topics.top5(&stream.key));
                    }
                }
                if let Some(d) = discovery.as_mut() {
                    d.cameras.retain(|c| c != cam.id.as_ref());
                    topics.extend(d.config_topics(&cam.id));
                    d.snapshots.retain(|c| c != cam.id.as_ref());
                }
                for topic in topics {
                    outbox.push_urgent(topics::cleared(topic));
                }
            }
            drop(outbox);
            drop(discovery);
            shared.changed();
        }
    }

    /// Each active camera's classified frames/s over the period just ended, against what
    /// it asks for: a camera held well below its demand (the pipeline is at capacity and
    /// shares it out) is reported once, and again when it recovers.
    pub(super) fn measure_rates(&self, cams: &mut [Cam], period: Duration) {
        for (i, cam) in cams.iter_mut().enumerate() {
            if !cam.active {
                continue;
            }
            let Some((_, s)) = self.status.snapshot(i) else {
                continue;
            };
            let rate = (s.classified - cam.classified_then.min(s.classified)) as f64
                / period.as_secs_f64().max(1e-3);
            cam.classified_then = s.classified;
            self.status
                .count(i, |st| st.classified_fps = (rate * 10.0).round() / 10.0);
            let streaming = s.state == crate::status::CameraState::Streaming;
            let degraded = streaming && s.demand_fps > 0.0 && rate < 0.9 * s.demand_fps;
            if degraded != cam.degraded {
                cam.degraded = degraded;
                if degraded {
                    tracing::warn!(camera = %cam.id, classified_fps = format!("{rate:.1}"),
                        demand_fps = format!("{:.1}", s.demand_fps),
                        "pipeline at capacity: camera classified below its frame rate");
                } else {
                    tracing::info!(camera = %cam.id, classified_fps = format!("{rate:.1}"),
                        "camera classified at its frame rate again");
                }
            }
        }
    }

    /// Region `region` of camera `cam` is classified for the first time in this run: Home
    /// Assistant gets its sensor unless it was announced already (configured at start).
    pub(super) fn region_seen(&self, shared: &Shared, cam: &str, region: &str) {
        let mut discovery = shared.discovery();
        let Some(d) = discovery.as_mut() else { return };
        if d.regions.iter().any(|(c, r)| c == cam && r == region) {
            return;
        }
        d.regions.push((cam.to_owned(), region.to_owned()));
        if shared.connected.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst) {
            shared.outbox().push_urgent(d.region_message(cam, region));
        }
        drop(discovery);
        shared.changed();
    }

    /// A reload swapped the model: discovery's device info names it, so announce again.
    pub(super) fn model_changed(&self, shared: &Shared, name: &str) {
        let mut discovery = shared.discovery();
        if let Some(d) = discovery.as_mut() {
            if d.model != name {
                d.model = name.to_owned();
                if !shared.stopping.load(Ordering::SeqCst) {
                    shared.extend_urgent(d.messages());
                }
                drop(discovery);
                shared.changed();
            }
        }
    }

    /// Queues the retained status of every active camera whose state moved since last time.
    pub(super) fn publish_statuses(&self, shared: &Shared, cams: &mut [Cam]) {
        for (i, cam) in cams.iter_mut().enumerate() {
            if !cam.active {
                continue;
            }
            let Some((version, status)) = self.status.snapshot(i) else {
                continue;
            };
            // Fold the outbox drop count into the version so a new drop republishes.
            let key = version
                .wrapping_mul(1 << 20)
                .wrapping_add(status.outbox_dropped);
            if key == cam.status_seen {
                continue;
            }
            cam.status_seen = key;
            let topic = self.topics.camera_status(&cam.id);
            let payload = payload::encode_status(&status);
            self.monitor.events.status(&cam.id, &payload);
            shared
                .outbox()
                .push_urgent(topics::retained(topic, payload));
            shared.changed();
        }
    }
}
