//! The spool reader: `state.json` and `outbox.jsonl` text of any content are read
//! without a panic, every non-blank line is either a message or counted unreadable; and
//! messages written by the spool come back as they were.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use streamclassd::publish::outbox::OutMsg;
use streamclassd::publish::spool::{outbox_text, parse_outbox, parse_state, Restored};
use streamclassd::publish::Qos;

#[derive(Arbitrary, Debug)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    camera: Option<u8>,
}

fn camera_index(id: &str) -> Option<usize> {
    id.strip_prefix("cam")?.parse().ok()
}

// The input is a spool as the daemon leaves it: its first line `state.json`, the rest
// `outbox.jsonl` (so real spool files seed the corpus); the same bytes, read as
// `arbitrary` data, give the messages of the round trip.
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (state, outbox) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = parse_state(state);
    let mut read = Restored::default();
    parse_outbox(outbox, camera_index, &mut read);
    let lines = outbox.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(read.messages.len() + read.unreadable, lines);

    let Ok(messages) = Vec::<Msg>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let sent: Vec<OutMsg> = messages
        .iter()
        .map(|m| OutMsg {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: match m.qos % 3 {
                0 => Qos::AtMostOnce,
                1 => Qos::AtLeastOnce,
                _ => Qos::ExactlyOnce,
            },
            retain: m.retain,
            camera: m.camera.map(usize::from),
        })
        .collect();
    let text = outbox_text(&sent, |i| format!("cam{i}")).expect("serializable");
    let text = String::from_utf8(text).expect("the spool writes UTF-8");
    let mut back = Restored::default();
    parse_outbox(&text, camera_index, &mut back);
    assert_eq!(back.unreadable, 0, "{text}");
    assert_eq!(back.messages.len(), sent.len(), "{text}");
    for (a, b) in sent.iter().zip(&back.messages) {
        assert_eq!(a.topic, b.topic);
        assert_eq!(
            String::from_utf8_lossy(&a.payload).as_bytes(),
            b.payload.as_slice()
        );
        assert_eq!((a.qos, a.retain, a.camera), (b.qos, b.retain, b.camera));
    }
});
