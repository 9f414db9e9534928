//! The on-disk spool: undelivered messages and per-camera sequence numbers survive a
//! restart of the daemon when `[mqtt] spool_dir` is set.
//!
//! `outbox.jsonl` holds one message per line (topic, QoS, retain flag, camera id and the
//! payload text); `state.json` holds the next `seq` of each camera so numbering continues
//! across restarts. Both are written to a temporary file, synced and renamed, so a crash
//! leaves either the old or the new version. The spool is read at start and rewritten at
//! shutdown; a daemon killed without shutdown keeps the spool it read, so its messages are
//! delivered again (QoS 1 allows duplicates, not loss).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::Qos;
use super::outbox::OutMsg;

const OUTBOX: &str = "outbox.jsonl";
const STATE: &str = "state.json";

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    topic: String,
    qos: u8,
    retain: bool,
    #[serde(default)]
    camera: Option<String>,
    payload: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    seq: HashMap<String, u64>,
}

/// What a spool held at start.
#[derive(Debug, Default)]
pub struct Restored {
    pub messages: Vec<OutMsg>,
    /// Next `seq` per camera id.
    pub seq: HashMap<String, u64>,
    /// Lines that could not be read (reported, skipped).
    pub unreadable: usize,
}

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
        }
    }

    /// Reads the spool. `camera_index` maps a camera id to its position in the current
    /// configuration (a camera that was removed keeps its messages, without drop
    /// accounting).
    pub fn load(&self, camera_index: impl Fn(&str) -> Option<usize>) -> std::io::Result<Restored> {
        std::fs::create_dir_all(&self.dir)?;
        let mut restored = Restored::default();
        match std::fs::read_to_string(self.dir.join(STATE)) {
            Ok(text) => match parse_state(&text) {
                Some(seq) => restored.seq = seq,
                None => restored.unreadable += 1,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match std::fs::read_to_string(self.dir.join(OUTBOX)) {
            Ok(text) => parse_outbox(&text, camera_index, &mut restored),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(restored)
    }

    /// Replaces the spool with `messages` (removing the file when there are none) and the
    /// sequence state. `camera_id` names the camera of a message for the next start.
    pub fn save(
        &self,
        messages: &[OutMsg],
        camera_id: impl Fn(usize) -> String,
        seq: &HashMap<String, u64>,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let state = serde_json::to_vec(&State { seq: seq.clone() })?;
        write_atomic(&self.dir.join(STATE), &state)?;
        let path = self.dir.join(OUTBOX);
        if messages.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        write_atomic(&path, &outbox_text(messages, camera_id)?)
    }
}

/// The per-camera next `seq` that `state.json` text holds; `None` when it is not one.
pub fn parse_state(text: &str) -> Option<HashMap<String, u64>> {
    serde_json::from_str::<State>(text).ok().map(|s| s.seq)
}

/// Adds the messages of `outbox.jsonl` text to `restored`, counting the lines that are
/// not one (blank lines are neither).
pub fn parse_outbox(
    text: &str,
    camera_index: impl Fn(&str) -> Option<usize>,
    restored: &mut Restored,
) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let read = serde_json::from_str::<Line>(line)
            .ok()
            .and_then(|l| Some((Qos::from_level(l.qos)?, l)));
        match read {
            Some((qos, l)) => restored.messages.push(OutMsg {
                camera: l.camera.as_deref().and_then(&camera_index),
                qos,
                topic: l.topic,
                payload: l.payload.into_bytes(),
                retain: l.retain,
            }),
            None => restored.unreadable += 1,
        }
    }
}

/// `outbox.jsonl` text for `messages`, one JSON line each; `camera_id` names a message's
/// camera. A payload that is not UTF-8 is kept with U+FFFD in place of its bad bytes
/// (the daemon's payloads are JSON text).
pub fn outbox_text(
    messages: &[OutMsg],
    camera_id: impl Fn(usize) -> String,
) -> serde_json::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for m in messages {
        let line = Line {
            topic: m.topic.clone(),
            qos: m.qos.level(),
            retain: m.retain,
            camera: m.camera.map(&camera_id),
            payload: String::from_utf8_lossy(&m.payload).into_owned(),
        };
        serde_json::to_writer(&mut buf, &line)?;
        buf.push(b'\n');
    }
    Ok(buf)
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(cam: usize, text: &str) -> OutMsg {
        OutMsg {
            topic: format!("p/c{cam}/labels"),
            payload: text.as_bytes().to_vec(),
            qos: Qos::AtLeastOnce,
            retain: false,
            camera: Some(cam),
        }
    }

    #[test]
    fn round_trips_messages_and_sequence_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path());
        let seq: HashMap<String, u64> = [("c0".to_owned(), 41), ("c1".to_owned(), 7)].into();
        let msgs = vec![
            msg(0, r#"{"seq":39}"#),
            msg(1, r#"{"seq":6}"#),
            msg(0, "{\"a\":\"\\n\"}"),
        ];
        spool.save(&msgs, |i| format!("c{i}"), &seq).expect("save");
        // On the next start camera c1 is first in the config and c0 was removed.
        let r = spool.load(|id| (id == "c1").then_some(0)).expect("load");
        assert_eq!(r.seq, seq);
        assert_eq!(r.unreadable, 0);
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[0].payload, msgs[0].payload);
        assert_eq!(r.messages[0].camera, None);
        assert_eq!(r.messages[1].camera, Some(0));
        assert_eq!(r.messages[2].payload, msgs[2].payload);
        // Saving nothing removes the outbox but keeps the sequence state.
        spool.save(&[], |i| format!("c{i}"), &seq).expect("save");
        let r = spool.load(|_| None).expect("load");
        assert!(r.messages.is_empty());
        assert_eq!(r.seq.get("c0"), Some(&41));
    }

    #[test]
    fn damaged_lines_are_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(OUTBOX),
            "{\"topic\":\"t\",\"qos\":1,\"retain\":false,\"payload\":\"x\"}\nnot json\n{\"topic\":\"t\",\"qos\":9,\"retain\":false,\"payload\":\"y\"}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join(STATE), "{broken").expect("write");
        let r = Spool::new(dir.path()).load(|_| None).expect("load");
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.unreadable, 3);
    }
}
