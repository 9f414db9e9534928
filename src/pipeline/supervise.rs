//! The last two phases of a run: supervision (reloads applied; a stage that ends before
//! its producer stops the capture side so the rest drains; done when every thread has
//! ended) and the finish (threads joined, the exit summary, the verdict).

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::select;

use crate::capture::CaptureEnd;
use crate::publish::PublishReport;
use crate::service::Notifier;

use super::stages::Stages;
use super::summary::{CameraSummary, Summary};
use super::{service_status, RunError, RunOptions};

/// How long supervision waits for an event (a thread ended, a stop or reload requested)
/// before it does its periodic duties anyway: the watchdog and systemd's status line.
const DUTY_INTERVAL: Duration = Duration::from_millis(500);

impl Stages {
    /// Supervises until every thread has ended, waking when one ends, when a stop or a
    /// reload is requested, or for its periodic duties.
    pub(super) fn supervise(&mut self) {
        let mut notifier = Notifier::new();
        let mut stopping_sent = false;
        let n = self.cameras.running.len();
        notifier.ready(&format!(
            "{n} camera(s), model {}",
            self.reloader.config.model.name
        ));
        loop {
            if !self.cancel.load(Ordering::Relaxed) {
                self.reloader
                    .poll(&mut self.cameras, &self.metrics, &notifier);
            }
            if let Err(e) = self.cameras.reap() {
                tracing::error!(error = %e, "cannot start camera");
            }
            let capturing = self.cameras.capturing() || self.reloader.pending.is_some();
            let consumer_gone =
                self.inference.is_finished() || self.publish.is_finished() || self.cameras.broken();
            if capturing && consumer_gone {
                // A consumer ended before its producer: only a failure does that.
                self.cancel.store(true, Ordering::Relaxed);
            }
            if !capturing && self.cameras.all_finished() {
                // Every camera has ended: inference drains what is left and hangs up.
                self.cameras.control = None;
            }
            let all_done = !capturing
                && self.cameras.all_finished()
                && self.inference.is_finished()
                && self.publish.is_finished();
            // A requested stop is announced as soon as it is seen, even when the pipeline
            // drains within this very pass.
            if self.cancel.load(Ordering::Relaxed) && !stopping_sent {
                stopping_sent = true;
                notifier.stopping();
            }
            if all_done {
                return;
            }
            let since = self.running_since;
            notifier.tick(&self.liveness, || {
                service_status(&self.status, &self.metrics, since)
            });
            select! {
                recv(self.exits) -> _ => {}
                recv(self.wake) -> woken => {
                    if woken.is_err() {
                        // The waker is gone: flags are still read at every duty interval.
                        self.wake = crossbeam_channel::never();
                    }
                }
                default(DUTY_INTERVAL) => {}
            }
        }
    }

    /// Joins every thread and reports the run: the summary (logged, and written when
    /// asked), then the verdict — a stage that panicked, a camera that failed, messages
    /// the broker never confirmed.
    pub(super) fn finish(mut self, opts: &RunOptions) -> Result<Summary, RunError> {
        self.admin_stop.store(true, Ordering::Relaxed);
        let mut panicked = 0;
        if let Some(h) = self.admin.take() {
            panicked += usize::from(h.join().is_err());
        }
        let cameras = &mut self.cameras;
        for c in std::mem::take(&mut cameras.running) {
            cameras.join(c);
        }
        for c in std::mem::take(&mut cameras.stopping) {
            cameras.join(c);
        }
        panicked += cameras.panicked;
        panicked += usize::from(self.inference.join().is_err());
        let publish = match self.publish.join() {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "publisher could not start its runtime");
                panicked += 1;
                PublishReport::default()
            }
            Err(_) => {
                panicked += 1;
                PublishReport::default()
            }
        };
        let summary = summarize(
            &self.status,
            &mut self.cameras,
            &publish,
            self.running_since,
        );
        if let Some(path) = &opts.summary_json {
            if let Err(e) = summary.write_json(path) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the summary");
            }
        }
        if panicked > 0 {
            return Err(RunError::StageFailed(panicked));
        }
        let failed = summary.failed_cameras();
        if failed > 0 {
            return Err(RunError::CameraFailed(failed));
        }
        if summary.unconfirmed > 0 {
            return Err(RunError::Undelivered(summary.unconfirmed));
        }
        Ok(summary)
    }
}

/// The cameras configured at the end (their ends decide the exit code) and what the
/// publisher did, logged.
fn summarize(
    status: &crate::status::StatusBoard,
    cameras: &mut super::cameras::Cameras,
    publish: &PublishReport,
    since: std::time::Instant,
) -> Summary {
    let cameras_summary = status
        .active()
        .iter()
        .map(|(i, id)| {
            let end = cameras.ends[*i]
                .take()
                .unwrap_or(CaptureEnd::Stopped { frames: 0 });
            if let CaptureEnd::Failed(e) = &end {
                tracing::error!(camera = %id, error = %e, "camera failed");
            }
            let st = status.snapshot(*i).map(|(_, s)| s).unwrap_or_default();
            let published = publish.published.get(*i).copied().unwrap_or(0);
            CameraSummary::new(id, &end, &st, cameras.preprocessed[*i], published)
        })
        .collect();
    let elapsed = since.elapsed().as_secs_f64();
    let summary = Summary {
        elapsed_s: elapsed,
        cameras: cameras_summary,
        spooled: publish.spooled,
        unconfirmed: publish.unconfirmed,
    };
    let total: u64 = summary.cameras.iter().map(|c| c.published).sum();
    tracing::info!(
        published = total,
        elapsed_s = format!("{elapsed:.2}"),
        frames_per_s = format!("{:.2}", total as f64 / elapsed.max(1e-9)),
        "pipeline stopped"
    );
    summary.cameras.iter().for_each(CameraSummary::log);
    summary
}
