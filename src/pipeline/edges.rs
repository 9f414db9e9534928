//! Every edge between the stages, with its capacity and what happens when it is full: the
//! one table the spawn sites read and `docs/design.md` quotes (a unit test keeps the two in
//! step).

use crossbeam_channel::{bounded, Receiver, Sender};

/// What a sender does when the edge is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// The sender waits for room: nothing is lost.
    Block,
    /// The waiting item is evicted and counted in the camera's `dropped`: a live camera
    /// never queues stale frames.
    NewestWins,
    /// No buffer: the sender waits until the receiver takes the item.
    Rendezvous,
}

impl WhenFull {
    /// How `docs/design.md` names the policy.
    pub fn describe(self) -> &'static str {
        match self {
            WhenFull::Block => "blocks",
            WhenFull::NewestWins => "newest wins",
            WhenFull::Rendezvous => "rendezvous",
        }
    }
}

/// One edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub name: &'static str,
    pub capacity: usize,
    pub when_full: WhenFull,
}

impl Edge {
    /// A channel with this edge's capacity (its policy is the sender's to apply).
    pub fn channel<T>(&self) -> (Sender<T>, Receiver<T>) {
        bounded(self.capacity)
    }
}

/// A live camera's decoded frames: one slot; capture evicts a waiting frame for a newer one.
pub const CAPTURE_LIVE: Edge = Edge {
    name: "capture → preprocess, live source",
    capacity: 1,
    when_full: WhenFull::NewestWins,
};

/// A file's decoded frames: a replay loses nothing.
pub const CAPTURE_FILE: Edge = Edge {
    name: "capture → preprocess, file",
    capacity: 2,
    when_full: WhenFull::Block,
};

/// One per camera: a prepared frame waits for at most the inference run in progress.
pub const PREPARED: Edge = Edge {
    name: "preprocess → inference, per camera",
    capacity: 0,
    when_full: WhenFull::Rendezvous,
};

/// Classifications to the publisher, which never waits for the broker.
pub const CLASSIFIED: Edge = Edge {
    name: "inference → publish",
    capacity: 256,
    when_full: WhenFull::Block,
};

/// Cameras started and models swapped: rare, read between batches.
pub const CONTROL: Edge = Edge {
    name: "pipeline → inference, control",
    capacity: 64,
    when_full: WhenFull::Block,
};

/// Messages handed to the MQTT client and not yet confirmed.
pub const CLIENT_WINDOW: Edge = Edge {
    name: "publisher → MQTT client, in flight",
    capacity: crate::publish::WINDOW,
    when_full: WhenFull::Block,
};

/// Every edge, in pipeline order.
pub const EDGES: [Edge; 6] = [
    CAPTURE_LIVE,
    CAPTURE_FILE,
    PREPARED,
    CLASSIFIED,
    CONTROL,
    CLIENT_WINDOW,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of the first table under `## Edges and back-pressure` in the design notes.
    fn documented() -> Vec<Vec<String>> {
        let doc = include_str!("../../docs/design.md");
        let section = doc
            .split("## Edges and back-pressure")
            .nth(1)
            .expect("design.md has the edge section");
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2) // header and rule
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_design_notes_quote_this_table() {
        let rows = documented();
        assert_eq!(rows.len(), EDGES.len(), "{rows:#?}");
        for (edge, row) in EDGES.iter().zip(&rows) {
            assert_eq!(row[0], edge.name, "{row:?}");
            assert_eq!(row[1], edge.capacity.to_string(), "{}: {row:?}", edge.name);
            assert!(
                row[2].starts_with(edge.when_full.describe()),
                "{}: design.md says {:?}, the code {:?}",
                edge.name,
                row[2],
                edge.when_full
            );
        }
    }

    #[test]
    fn a_rendezvous_edge_has_no_buffer() {
        for e in EDGES {
            assert_eq!(
                e.capacity == 0,
                e.when_full == WhenFull::Rendezvous,
                "{e:?}"
            );
        }
    }
}
