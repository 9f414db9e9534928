//! More demand than capacity: eight live cameras at 25 frames/s each into one ResNet-50
//! (batches of up to 4) on this machine's CPU. Every camera is served (none starves
//! another), every classified frame is delivered in order, each camera's demand is
//! reported, and a camera classified below its demand is reported as at capacity in the
//! log, in its status and in the metrics. How evenly the capacity is shared (the spread
//! of the cameras' rates) is a measurement: `scripts/bench --sections cameras`.

mod common;

use common::{
    at_least, config, fixtures, labels, Broker, Daemon, RtspServer, Subscriber, PATIENCE,
};

#[test]
fn an_overloaded_pipeline_serves_every_camera_and_says_so() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "cap/#");
    let url = server.url("");
    let ids: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    let list: Vec<(&str, &str, f64)> = ids
        .iter()
        .map(|id| (id.as_str(), url.as_str(), 0.0))
        .collect();
    let admin = common::stable_port();
    let cfg = config(broker.port, "cap", &list, "")
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let mut d = Daemon::start(&cfg);
    // Every camera classified and measured over two status periods.
    let measured = |m: &[common::Message]| {
        ids.iter().all(|id| {
            m.iter()
                .filter(|m| m.topic == format!("cap/{id}/status") && !m.payload.is_empty())
                .filter(|m| m.json()["fps"]["classified"].as_f64().unwrap_or(0.0) > 0.0)
                .count()
                >= 2
        })
    };
    assert!(sub.wait_until(PATIENCE, measured), "{}", d.stderr());
    for id in &ids {
        assert!(
            sub.wait_until(PATIENCE, at_least(&format!("cap/{id}/labels"), 10)),
            "camera {id} starved:\n{}",
            d.stderr()
        );
    }
    let (code, metrics) = common::http_get(admin, "/metrics");
    assert_eq!(code, 200);
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    let log = d.stderr();

    let mut rates = Vec::new();
    for id in &ids {
        // Everything the daemon published reached the subscriber, in order.
        let topic = format!("cap/{id}/labels");
        let published = d.total(id, "published") as usize;
        assert!(sub.wait_until(PATIENCE, at_least(&topic, published)));
        let msgs = labels(&sub, &topic);
        assert_eq!(msgs.len(), published, "{id}");
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m["seq"].as_u64(), Some(i as u64), "{id}: seq contiguous");
        }
        let statuses: Vec<serde_json::Value> = sub
            .on(&format!("cap/{id}/status"))
            .into_iter()
            .filter(|m| !m.payload.is_empty())
            .map(|m| m.json())
            .collect();
        let last = statuses
            .iter()
            .rfind(|v| v["state"] == "streaming" && v["fps"]["classified"].as_f64() > Some(0.0))
            .expect("a measured status");
        let demand = last["fps"]["demand"].as_f64().expect("demand");
        let got = last["fps"]["classified"].as_f64().expect("classified");
        assert_eq!(demand, 25.0, "{id}: the clip's frame rate is the demand");
        rates.push(got);
        // A period measured below 90% of the demand (the status shows it rounded to 0.1)
        // is reported in the log; once said, it stays said until the camera recovers.
        let below = statuses.iter().any(|v| {
            v["fps"]["classified"]
                .as_f64()
                .is_some_and(|c| c > 0.0 && c + 0.05 < 0.9 * demand)
        });
        if below {
            assert!(
                log.lines()
                    .any(|l| l.contains("pipeline at capacity")
                        && l.contains(&format!("camera={id}"))),
                "{id} was classified below its demand but the log does not say so:\n{log}"
            );
        }
        assert!(
            metrics.contains(&format!(
                "streamclassd_camera_demand_fps{{camera=\"{id}\"}} 25"
            )),
            "{metrics}"
        );
        assert!(metrics.contains(&format!(
            "streamclassd_stage_seconds_total{{camera=\"{id}\",stage=\"inference\"}}"
        )));
    }
    eprintln!("8 cameras x 25 frames/s into ResNet-50: classified {rates:?} frames/s");
}
