//! Running under systemd: readiness, the watchdog, status lines, and logging to journald.
//!
//! The watchdog is only fed while the pipeline makes progress. Each stage thread marks
//! itself busy while it works on one item and idle while it waits for input; a stage that
//! stays busy past its limit is wedged (a hung inference, a capture stuck in a driver), and
//! then WATCHDOG=1 is withheld so systemd restarts the service. A healthy idle daemon (no
//! frames because a camera is away) keeps feeding it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Busy/idle markers of every stage thread. Stages come and go with their threads (a
/// camera added or removed by a reload): a stage counts while some [`Beat`] for it exists.
#[derive(Debug)]
pub struct Liveness {
    start: Instant,
    stages: Mutex<Vec<Weak<Stage>>>,
}

#[derive(Debug)]
struct Stage {
    name: String,
    start: Instant,
    /// Milliseconds since `start` when the current item began, plus one; 0 when idle.
    busy_since: AtomicU64,
    limit: Duration,
}

/// One stage's handle on [`Liveness`].
#[derive(Debug, Clone)]
pub struct Beat {
    stage: Arc<Stage>,
}

impl Beat {
    /// The stage starts working on an item.
    pub fn busy(&self) {
        let ms = self.stage.start.elapsed().as_millis() as u64 + 1;
        self.stage.busy_since.store(ms, Ordering::Relaxed);
    }

    /// The stage finished its item (or waits for input).
    pub fn idle(&self) {
        self.stage.busy_since.store(0, Ordering::Relaxed);
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            start: Instant::now(),
            stages: Mutex::new(Vec::new()),
        }
    }
}

impl Liveness {
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness::default())
    }

    /// Adds a stage that may stay busy on one item for at most `limit`; it is watched as
    /// long as the returned beat (or a clone) lives.
    pub fn stage(&self, name: impl Into<String>, limit: Duration) -> Beat {
        let stage = Arc::new(Stage {
            name: name.into(),
            start: self.start,
            busy_since: AtomicU64::new(0),
            limit,
        });
        let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        stages.retain(|s| s.strong_count() > 0);
        stages.push(Arc::downgrade(&stage));
        Beat { stage }
    }

    /// The first stage busy on one item for longer than its limit, and for how long.
    pub fn wedged(&self) -> Option<(String, Duration)> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        stages.iter().filter_map(Weak::upgrade).find_map(|s| {
            let since = s.busy_since.load(Ordering::Relaxed);
            let busy = Duration::from_millis(now.saturating_sub(since));
            (since != 0 && busy > s.limit).then(|| (s.name.clone(), busy))
        })
    }

    /// Stages currently watched.
    pub fn stages(&self) -> usize {
        let stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        stages.iter().filter(|s| s.strong_count() > 0).count()
    }
}

/// Talks to systemd's notification socket (a no-op when not started by systemd).
#[derive(Debug)]
pub struct Notifier {
    watchdog: Option<Duration>,
    last_feed: Instant,
    last_status: Instant,
    withheld: bool,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::new()
    }
}

impl Notifier {
    pub fn new() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            last_feed: Instant::now(),
            last_status: Instant::now() - Duration::from_secs(3600),
            withheld: false,
        }
    }

    pub fn ready(&self, status: &str) {
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload began (systemd shows the unit as reloading until [`Notifier::reloaded`]).
    pub fn reloading(&self) {
        let _ = sd_notify::notify(&[NotifyState::Reloading]);
    }

    /// A reload ended, applied or rejected.
    pub fn reloaded(&self) {
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }

    pub fn stopping(&self) {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }

    /// Feeds the watchdog (at half its interval) unless a stage is wedged; sends a status
    /// line every few seconds. Call often.
    pub fn tick(&mut self, live: &Liveness, status: impl FnOnce() -> String) {
        if let Some(interval) = self.watchdog {
            if self.last_feed.elapsed() >= interval / 2 {
                match live.wedged() {
                    None => {
                        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                        self.last_feed = Instant::now();
                        self.withheld = false;
                    }
                    Some((stage, busy)) if !self.withheld => {
                        let stage = stage.as_str();
                        self.withheld = true;
                        tracing::error!(
                            stage,
                            busy_s = busy.as_secs(),
                            "stage wedged: watchdog no longer fed"
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        if self.last_status.elapsed() >= Duration::from_secs(5) {
            self.last_status = Instant::now();
            let _ = sd_notify::notify(&[NotifyState::Status(&status())]);
        }
    }
}

/// True when stderr is connected to the journal (systemd sets `JOURNAL_STREAM` to the
/// device and inode of the stream it gave us).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_busy_past_its_limit_is_wedged_an_idle_one_is_not() {
        let live = Liveness::new();
        let cap = live.stage("capture", Duration::from_millis(30));
        let inf = live.stage("inference", Duration::from_secs(60));
        cap.busy();
        inf.busy();
        assert!(live.wedged().is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(live.wedged().map(|(n, _)| n).as_deref(), Some("capture"));
        cap.idle();
        assert!(live.wedged().is_none(), "idle for as long as it likes");
        cap.busy();
        std::thread::sleep(Duration::from_millis(60));
        assert!(live.wedged().is_some());
        drop(cap);
        assert!(
            live.wedged().is_none(),
            "a stage whose thread ended is not watched"
        );
        assert_eq!(live.stages(), 1);
    }
}
