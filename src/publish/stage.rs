//! The publisher thread: classifications in, numbered label messages into the outbox, and
//! the camera statuses and stats kept fresh, until the classification channel hangs up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use tokio::sync::watch;

use super::cameras::Cam;
use super::client::Connector;
use super::driver::{drive, feed, Driver};
use super::outbox::{OutMsg, Outbox};
use super::servers::Rotation;
use super::shared::Shared;
use super::{payload, topics, PublishReport, Publisher, Qos, STATUS_REFRESH, WINDOW};
use crate::messages::Classification;

/// The publisher's state between two messages.
pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) cams: Vec<Cam>,
    /// Roster version last followed.
    pub(super) roster: u64,
    /// Each camera's next `seq` as the spool left it.
    pub(super) restored_seq: HashMap<String, u64>,
    pub(super) started: Instant,
    last_refresh: Instant,
    last_stats: Instant,
    /// The model the last classification came from (a reload may swap it).
    model_name: String,
    /// Encodes snapshots, started when the first one is due.
    pub(super) snapshots: Option<super::snapshot::Encoder>,
}

impl Publisher {
    /// The publisher thread: runs until the classification channel disconnects, then
    /// drains (see [`super::shutdown`]).
    pub fn run(mut self, rx: Receiver<Classification>) -> std::io::Result<PublishReport> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mqtt-io")
            .enable_all()
            .build()?;
        let restored = std::mem::take(&mut self.restored);
        let mut outbox = Outbox::new(self.mqtt.outbox_max, self.status.cameras());
        if !restored.messages.is_empty() {
            tracing::info!(
                messages = restored.messages.len(),
                "delivering messages spooled by the previous run"
            );
        }
        outbox.restore(restored.messages);
        let discovery = self.discovery.take();
        let model_name = discovery
            .as_ref()
            .map(|d| d.model.clone())
            .unwrap_or_default();
        let shared = Arc::new(Shared::new(outbox, discovery));
        let (stop_tx, stop_rx) = watch::channel(false);
        let driver = Driver {
            connector: Connector {
                mqtt: self.mqtt.clone(),
                password: self.password.clone(),
                tls: self.tls.clone(),
                will_topic: self.topics.status(),
                capacity: WINDOW,
            },
            shared: shared.clone(),
            metrics: self.metrics.clone(),
            status_topic: self.topics.status(),
            servers: Rotation::new(self.mqtt.servers.clone(), self.mqtt.servers_order),
        };
        let driver = rt.spawn(drive(driver, stop_rx.clone()));
        let expiry = self.mqtt.message_expiry;
        let feeder = rt.spawn(feed(shared.clone(), expiry, stop_rx));

        let mut session = Session {
            shared,
            cams: Vec::new(),
            roster: u64::MAX,
            restored_seq: restored.seq,
            started: Instant::now(),
            last_refresh: Instant::now(),
            last_stats: Instant::now(),
            model_name,
            snapshots: None,
        };
        self.serve(&rx, &mut session);
        if let Some(encoder) = session.snapshots.take() {
            encoder.finish();
        }
        let report = self.drain(&rt, &mut session);
        self.stop_tasks(rt, stop_tx, session.shared.client(), [driver, feeder]);
        Ok(report)
    }

    /// Follows the roster and queues the statuses that moved.
    fn refresh(&self, s: &mut Session) {
        self.sync_roster(&s.shared, &mut s.cams, &mut s.roster, &s.restored_seq);
        self.publish_statuses(&s.shared, &mut s.cams);
    }

    fn serve(&self, rx: &Receiver<Classification>, s: &mut Session) {
        self.refresh(s);
        loop {
            self.beat.idle();
            select! {
                recv(rx) -> msg => {
                    self.beat.busy();
                    let Ok(c) = msg else { break };
                    self.classified(s, c);
                },
                recv(self.status.rings()) -> _ => self.refresh(s),
                // Outbox drops change the status without a state change.
                default(Duration::from_secs(1)) => self.refresh(s),
            }
            if let Some(every) = self.mqtt.stats_interval {
                if s.last_stats.elapsed() >= every {
                    s.last_stats = Instant::now();
                    self.publish_stats(&s.shared, s.started);
                }
            }
            if s.last_refresh.elapsed() >= STATUS_REFRESH {
                // Counters move without state changes: refresh the retained statuses.
                self.measure_rates(&mut s.cams, s.last_refresh.elapsed());
                s.last_refresh = Instant::now();
                s.cams.iter_mut().for_each(|c| c.status_seen = u64::MAX);
                self.publish_statuses(&s.shared, &mut s.cams);
            }
        }
    }

    /// Numbers, encodes and queues one classification (and its debounced label).
    fn classified(&self, s: &mut Session, c: Classification) {
        let received = Instant::now();
        let cam = c.meta.camera;
        if cam >= s.cams.len() {
            self.sync_roster(&s.shared, &mut s.cams, &mut s.roster, &s.restored_seq);
        }
        let Some(state) = s.cams.get_mut(cam) else {
            tracing::error!(camera = cam, "classification for an unknown camera");
            return;
        };
        let id = state.id.clone();
        let stream = match &c.region {
            None => &mut state.whole,
            Some(r) => state.regions.entry(r.name.clone()).or_insert_with(|| {
                self.region_seen(&s.shared, &id, &r.name);
                self.stream(topics::stream(&id, Some(&r.name)), &s.restored_seq)
            }),
        };
        // Encoded straight into the message's own buffer: no copy per message.
        let mut buf = Vec::with_capacity(512);
        let (model, labels) = (&c.model.name, &c.model.labels);
        if let Err(e) = payload::encode(&c, &id, stream.seq, model, labels, &mut buf) {
            tracing::error!(camera = %id, error = %e, "cannot encode payload");
            return;
        }
        stream.seq += 1;
        if let (Some(d), Some(top1)) = (stream.debouncer.as_mut(), c.top.first()) {
            if let Some(index) = d.push(top1.index) {
                // An event in order with the labels (not coalesced like state).
                let _ = s.shared.outbox().push(OutMsg {
                    topic: self.topics.label(&stream.key),
                    payload: payload::encode_label(&c, &id, index, labels),
                    qos: Qos::AtLeastOnce,
                    retain: true,
                    camera: Some(cam),
                });
            }
        }
        if let Some(every) = self.ha_attributes {
            if stream.top5_at.is_none_or(|t| t.elapsed() >= every) {
                stream.top5_at = Some(Instant::now());
                let topic = self.topics.top5(&stream.key);
                let attributes = payload::encode_top5(&c, labels);
                s.shared
                    .outbox()
                    .push_urgent(topics::retained(topic, attributes));
            }
        }
        let labels_topic = stream.labels_topic.clone();
        state.published += 1;
        self.metrics.latency_seconds.observe(c.latency.total / 1e3);
        self.monitor.results.record(&c);
        self.monitor.frames.classified(cam, c.meta.index);
        let region = c.region.as_ref().map(|r| r.name.as_ref());
        let top1 = c.top.first().map(|t| t.index);
        self.snapshot(s, cam, c.meta.index, region, top1);
        self.monitor.events.classification(&buf);
        let lost = s.shared.outbox().push(OutMsg {
            topic: labels_topic,
            payload: buf,
            qos: self.mqtt.qos,
            retain: false,
            camera: Some(cam),
        });
        if let Some(cam) = lost.and_then(|m| m.camera) {
            self.count_outbox_drop(cam, &s.cams);
        }
        s.shared.changed();
        let depth = s.shared.outbox().pending();
        self.metrics.outbox_depth.set(depth as i64);
        let Classification {
            top,
            latency,
            batch,
            model,
            region,
            ..
        } = c;
        self.tops.give(top);
        let us = |ms: f64| (ms * 1e3) as u64;
        let publish_us = received.elapsed().as_micros() as u64;
        self.status.count(cam, |st| {
            st.classified += 1;
            if let Some(r) = region {
                match st.region_classified.iter_mut().find(|(n, _)| *n == r.name) {
                    Some((_, n)) => *n += 1,
                    None => st.region_classified.push((r.name, 1)),
                }
            }
            st.stage_us.preprocess += us(latency.preprocess);
            st.stage_us.inference += us(latency.inference / batch.max(1) as f64);
            st.stage_us.publish += publish_us;
        });
        if model.name != s.model_name {
            s.model_name.clone_from(&model.name);
            self.model_changed(&s.shared, &s.model_name);
        }
    }

    /// A full outbox dropped camera `cam`'s oldest label message: counted, and logged at
    /// every power of two.
    fn count_outbox_drop(&self, cam: usize, cams: &[Cam]) {
        let dropped = self
            .status
            .count(cam, |st| {
                st.outbox_dropped += 1;
                st.outbox_dropped
            })
            .unwrap_or(0);
        if dropped.is_power_of_two() {
            let id = cams.get(cam).map(|c| c.id.clone()).unwrap_or_default();
            tracing::warn!(camera = %id, dropped, "outbox full: oldest label messages dropped");
        }
    }
}
