//! Prometheus metrics: histograms observed by the stages, and per-camera counters read
//! from the [`StatusBoard`] at scrape time (so every counter has one source of truth).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::status::{CameraState, StatusBoard};

/// Metrics shared by the stages; cheap to update (atomics).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Duration of one inference run (a whole batch), seconds.
    pub inference_seconds: Histogram,
    /// Frames per inference run.
    pub batch_size: Histogram,
    /// Capture to hand-over to the publisher, seconds.
    pub latency_seconds: Histogram,
    /// Broker connection failures.
    pub broker_errors: Counter,
    /// Messages waiting in the outbox (queued or in flight).
    pub outbox_depth: Gauge,
    pub broker_connected: Gauge,
    /// Configuration reloads applied (SIGHUP).
    pub reloads: Counter,
    /// Configuration reloads rejected (invalid file, unusable model or source).
    pub reload_failures: Counter,
    /// Scaling and encoding one JPEG of a frame, seconds.
    pub jpeg_encode_seconds: Histogram,
    /// Open MJPEG and event streams.
    pub viewers: Gauge,
    /// MQTT snapshots encoded and queued.
    pub snapshots: Counter,
    /// Connections that went to another server than the one before.
    pub broker_failovers: Counter,
    /// Label messages sent again on a new connection after a lost one had written them.
    pub mqtt_resent: Counter,
    /// 1 for the server connected to, 0 for those connected to before.
    broker_servers: Family<Vec<(String, String)>, Gauge>,
    model_loaded: AtomicBool,
}

/// Name, help and how to read a per-camera counter from a status.
type CounterDef = (
    &'static str,
    &'static str,
    fn(&crate::status::CameraStatus) -> u64,
);

/// Name, help and how to read a per-camera gauge from a status.
type GaugeDef = (
    &'static str,
    &'static str,
    fn(&crate::status::CameraStatus) -> f64,
);

/// One active camera's id and status at scrape time.
type Snap<'a> = (&'a str, crate::status::CameraStatus);

#[derive(Debug)]
struct Cameras {
    status: Arc<StatusBoard>,
}

impl Collector for Cameras {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let active = self.status.active();
        let snaps: Vec<Snap<'_>> = active
            .iter()
            .filter_map(|(i, id)| self.status.snapshot(*i).map(|(_, s)| (id.as_ref(), s)))
            .collect();
        for encode in [counters, drops, states, rates, stage_seconds, regions] {
            encode(&mut encoder, &snaps)?;
        }
        Ok(())
    }
}

/// Per-camera counters read straight from the status.
fn counters(encoder: &mut DescriptorEncoder, snaps: &[Snap<'_>]) -> Result<(), std::fmt::Error> {
    let counters: [CounterDef; 5] = [
        (
            "streamclassd_frames_captured",
            "Frames decoded from the source (skipped ones not included).",
            |s| s.frames,
        ),
        (
            "streamclassd_frames_classified",
            "Label messages queued for the broker: the whole frame's and every region's (one per inference).",
            |s| s.classified,
        ),
        (
            "streamclassd_reconnects",
            "Times the source was reopened after a failure or stall.",
            |s| s.reconnects,
        ),
        (
            "streamclassd_frames_dropped_busy",
            "Frames dropped because the pipeline was busy (live sources).",
            |s| s.dropped,
        ),
        (
            "streamclassd_frames_skipped",
            "Frames of the source not decoded at all (keyframe-only decoding).",
            |s| s.skipped,
        ),
    ];
    for (name, help, get) in counters {
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
        for (id, s) in snaps {
            let labels = [("camera", *id)];
            ConstCounter::new(get(s)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Per region: label messages queued, and whether it cannot be classified.
fn regions(encoder: &mut DescriptorEncoder, snaps: &[Snap<'_>]) -> Result<(), std::fmt::Error> {
    let probe = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(
        "streamclassd_region_classified",
        "Label messages queued for the broker, per region of interest.",
        None,
        probe.metric_type(),
    )?;
    for (id, s) in snaps {
        for (region, n) in &s.region_classified {
            let labels = [("camera", *id), ("region", region.as_ref())];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
    }
    let probe = ConstGauge::new(0i64);
    let mut family = encoder.encode_descriptor(
        "streamclassd_region_unclassifiable",
        "1 for each region that cannot be classified (not inside the frame; the camera's status says why).",
        None,
        probe.metric_type(),
    )?;
    for (id, s) in snaps {
        for (region, _) in &s.region_errors {
            let labels = [("camera", *id), ("region", region.as_ref())];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Frames and messages lost, by reason.
fn drops(encoder: &mut DescriptorEncoder, snaps: &[Snap<'_>]) -> Result<(), std::fmt::Error> {
    let probe = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(
            "streamclassd_frames_dropped",
            "Frames or messages lost, by reason: busy (live source ahead of inference), decode_error (undecodable frame skipped), outbox_full (oldest message dropped while the broker was away).",
            None,
            probe.metric_type(),
        )?;
    for (id, s) in snaps {
        for (reason, v) in [
            ("busy", s.dropped),
            ("decode_error", s.decode_errors),
            ("outbox_full", s.outbox_dropped),
        ] {
            let labels = [("camera", *id), ("reason", reason)];
            ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The camera state as a one-hot gauge.
fn states(encoder: &mut DescriptorEncoder, snaps: &[Snap<'_>]) -> Result<(), std::fmt::Error> {
    let probe = ConstGauge::new(0i64);
    let mut family = encoder.encode_descriptor(
        "streamclassd_camera_decoding",
        "1 for what the camera decodes (all or keyframes), 0 for the other.",
        None,
        probe.metric_type(),
    )?;
    for (id, s) in snaps {
        for mode in ["all", "keyframes"] {
            let labels = [("camera", *id), ("mode", mode)];
            ConstGauge::new(i64::from(s.decoding == Some(mode)))
                .encode(family.encode_family(&labels)?)?;
        }
    }
    let probe = ConstGauge::new(0i64);
    let mut family = encoder.encode_descriptor(
        "streamclassd_camera_state",
        "1 for the camera's current state, 0 for the others.",
        None,
        probe.metric_type(),
    )?;
    for (id, s) in snaps {
        for state in CameraState::ALL {
            let labels = [("camera", *id), ("state", state.as_str())];
            ConstGauge::new(i64::from(s.state == state)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Demand and classified frames per second.
fn rates(encoder: &mut DescriptorEncoder, snaps: &[Snap<'_>]) -> Result<(), std::fmt::Error> {
    let gauges: [GaugeDef; 3] = [
            (
                "streamclassd_camera_demand_fps",
                "Inferences per second the camera asks for: its frame rate (its source's, or fps when lower; 0 for an unpaced file) for the whole frame and each region (or the region's fps).",
                |s| s.demand_fps,
            ),
            (
                "streamclassd_camera_classified_fps",
                "Inferences per second (whole frame and regions) over the last status period; below the demand when the pipeline is at capacity.",
                |s| s.classified_fps,
            ),
            (
                "streamclassd_camera_keyframe_interval_seconds",
                "The stream's measured keyframe interval (network streams; 0 until two keyframes were seen).",
                |s| s.keyframe_interval_s.unwrap_or(0.0),
            ),
        ];
    for (name, help, get) in gauges {
        let probe = ConstGauge::new(0f64);
        let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
        for (id, s) in snaps {
            ConstGauge::new(get(s)).encode(family.encode_family(&[("camera", *id)])?)?;
        }
    }
    Ok(())
}

/// Time spent per stage.
fn stage_seconds(
    encoder: &mut DescriptorEncoder,
    snaps: &[Snap<'_>],
) -> Result<(), std::fmt::Error> {
    let probe = ConstCounter::new(0f64);
    let mut family = encoder.encode_descriptor(
            "streamclassd_stage_seconds",
            "Time spent on the camera's frames by stage: decode (read and decode, including waiting for a live frame), preprocess, inference (a batch's time split over its frames), publish (encoding and queueing).",
            None,
            probe.metric_type(),
        )?;
    for (id, s) in snaps {
        let t = s.stage_us;
        for (stage, us) in [
            ("decode", t.decode),
            ("preprocess", t.preprocess),
            ("inference", t.inference),
            ("publish", t.publish),
        ] {
            let labels = [("camera", *id), ("stage", stage)];
            ConstCounter::new(us as f64 / 1e6).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The broker's fail-over metrics, registered together.
struct BrokerMetrics {
    failovers: Counter,
    resent: Counter,
    servers: Family<Vec<(String, String)>, Gauge>,
}

impl BrokerMetrics {
    fn register(registry: &mut Registry) -> BrokerMetrics {
        let m = BrokerMetrics {
            failovers: Counter::default(),
            resent: Counter::default(),
            servers: Family::default(),
        };
        registry.register(
            "streamclassd_broker_failovers",
            "Connections made to another server of mqtt.servers than the one before.",
            m.failovers.clone(),
        );
        registry.register(
            "streamclassd_mqtt_resent",
            "Label messages sent again on a new connection after the lost one had written them (possible duplicates; seq tells them apart).",
            m.resent.clone(),
        );
        registry.register(
            "streamclassd_broker_server_connected",
            "1 for the MQTT server connected to now, 0 for servers connected to before.",
            m.servers.clone(),
        );
        m
    }
}

impl Metrics {
    /// The `streamclassd_broker_server_connected` gauge of `server` (`host:port`).
    pub fn broker_server(&self, server: &str) -> Gauge {
        self.broker_servers
            .get_or_create(&vec![("server".to_owned(), server.to_owned())])
            .clone()
    }

    pub fn new(status: Arc<StatusBoard>) -> Metrics {
        let mut registry = Registry::default();
        let inference_seconds = Histogram::new([
            0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
        ]);
        let batch_size = Histogram::new([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]);
        let latency_seconds = Histogram::new([
            0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let broker_errors = Counter::default();
        let outbox_depth = Gauge::default();
        let broker_connected = Gauge::default();
        let reloads = Counter::default();
        let reload_failures = Counter::default();
        let jpeg_encode_seconds =
            Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25]);
        let viewers = Gauge::default();
        let snapshots = Counter::default();
        let broker = BrokerMetrics::register(&mut registry);
        registry.register(
            "streamclassd_snapshots",
            "MQTT snapshots (retained JPEGs on {prefix}/{camera}/snapshot) encoded and queued.",
            snapshots.clone(),
        );
        registry.register(
            "streamclassd_jpeg_encode_seconds",
            "Scaling and encoding one JPEG of a classified frame (once per frame and size, quality and overlay asked for, however many viewers ask).",
            jpeg_encode_seconds.clone(),
        );
        registry.register(
            "streamclassd_viewers",
            "Open MJPEG streams and event (SSE) streams on the admin listener.",
            viewers.clone(),
        );
        registry.register(
            "streamclassd_config_reloads",
            "Configuration reloads applied.",
            reloads.clone(),
        );
        registry.register(
            "streamclassd_config_reload_failures",
            "Configuration reloads rejected; the running configuration was kept.",
            reload_failures.clone(),
        );
        registry.register(
            "streamclassd_inference_duration_seconds",
            "Duration of one inference run (a batch).",
            inference_seconds.clone(),
        );
        registry.register(
            "streamclassd_batch_size",
            "Frames per inference run.",
            batch_size.clone(),
        );
        registry.register(
            "streamclassd_latency_seconds",
            "Capture to publish, per classified frame.",
            latency_seconds.clone(),
        );
        registry.register(
            "streamclassd_broker_errors",
            "Failed or lost connections to the MQTT broker.",
            broker_errors.clone(),
        );
        registry.register(
            "streamclassd_outbox_depth",
            "Messages not yet confirmed by the broker.",
            outbox_depth.clone(),
        );
        registry.register(
            "streamclassd_broker_connected",
            "1 while connected to the MQTT broker.",
            broker_connected.clone(),
        );
        registry.register_collector(Box::new(Cameras { status }));
        Metrics {
            registry,
            inference_seconds,
            batch_size,
            latency_seconds,
            broker_errors,
            outbox_depth,
            broker_connected,
            reloads,
            reload_failures,
            jpeg_encode_seconds,
            snapshots,
            broker_failovers: broker.failovers,
            mqtt_resent: broker.resent,
            broker_servers: broker.servers,
            viewers,
            model_loaded: AtomicBool::new(false),
        }
    }

    pub fn set_model_loaded(&self) {
        self.model_loaded.store(true, Ordering::Relaxed);
    }

    pub fn model_loaded(&self) -> bool {
        self.model_loaded.load(Ordering::Relaxed)
    }

    pub fn broker_is_connected(&self) -> bool {
        self.broker_connected.get() > 0
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
