//! The publisher's last steps: final camera states and stats, `offline`, the wait for the
//! broker to confirm what is left (within the grace period), the spool, and the tasks
//! stopped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::Client;
use super::outbox::OutMsg;
use super::spool::Spool;
use super::stage::Session;
use super::{topics, PublishReport, Publisher};

impl Publisher {
    /// Every stage before the publisher has drained: publishes the final states and
    /// `offline`, waits for the broker within the grace period, spools or counts the rest.
    pub(super) fn drain(&self, rt: &Runtime, s: &mut Session) -> PublishReport {
        self.sync_roster(&s.shared, &mut s.cams, &mut s.roster, &s.restored_seq);
        self.publish_statuses(&s.shared, &mut s.cams);
        if self.mqtt.stats_interval.is_some() {
            self.publish_stats(&s.shared, s.started);
        }
        let shared = &s.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        shared
            .outbox()
            .push_urgent(topics::retained(self.topics.status(), b"offline".to_vec()));
        shared.changed();
        let deadline = Instant::now() + self.grace;
        let settled = rt.block_on(async {
            loop {
                let progress = shared.progress.notified();
                if shared.outbox().pending() == 0 {
                    return true;
                }
                if tokio::time::timeout_at(deadline.into(), progress)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        });
        let undelivered: Vec<OutMsg> = shared
            .outbox()
            .undelivered()
            .into_iter()
            .filter(|m| m.camera.is_some())
            .collect();
        if !settled {
            tracing::warn!(
                undelivered = undelivered.len(),
                "grace period over before the broker confirmed every message"
            );
        }
        let mut report = PublishReport {
            published: s.cams.iter().map(|c| c.published).collect(),
            ..PublishReport::default()
        };
        match self.spool(s, &undelivered) {
            Some(Ok(())) => report.spooled = undelivered.len(),
            Some(Err(())) | None => report.unconfirmed = undelivered.len(),
        }
        report
    }

    /// Writes the undelivered messages and every camera's next `seq` to the spool, when
    /// one is configured.
    fn spool(&self, s: &Session, undelivered: &[OutMsg]) -> Option<Result<(), ()>> {
        let dir = self.mqtt.spool_dir.as_ref()?;
        let mut next: HashMap<String, u64> = s.restored_seq.clone();
        for c in &s.cams {
            let streams = std::iter::once(&c.whole).chain(c.regions.values());
            next.extend(streams.map(|st| (st.key.clone(), st.seq)));
        }
        let name = |i: usize| s.cams.get(i).map(|c| c.id.to_string()).unwrap_or_default();
        Some(match Spool::new(dir).save(undelivered, name, &next) {
            Ok(()) => {
                if !undelivered.is_empty() {
                    tracing::info!(messages = undelivered.len(), dir = %dir.display(), "undelivered messages spooled for the next start");
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot write the spool");
                Err(())
            }
        })
    }

    /// Disconnects the newest client and stops the connection tasks (each gets two seconds), then the
    /// runtime.
    pub(super) fn stop_tasks(
        &self,
        rt: Runtime,
        stop: watch::Sender<bool>,
        client: Option<Arc<Client>>,
        tasks: [JoinHandle<()>; 2],
    ) {
        let _ = stop.send(true);
        rt.block_on(async {
            if let Some(client) = client {
                let _ = tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
            }
            for mut task in tasks {
                if tokio::time::timeout(Duration::from_secs(2), &mut task)
                    .await
                    .is_err()
                {
                    task.abort();
                }
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}
