//! More demand than capacity: eight live cameras at 25 frames/s each into one ResNet-50
//! (batches of up to 4) on this machine's CPU. Every camera gets the same share of the
//! inference, within 5% over a status period (no camera starves another, and the luck of
//! which camera is ready first does not decide who is served), and the shortfall is
//! reported per camera in its status and metrics.

mod common;

use common::{config, fixtures, Broker, Daemon, RtspServer, Subscriber, PATIENCE};

#[test]
fn an_overloaded_pipeline_shares_out_its_capacity_fairly_and_says_so() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "cap/#");
    let url = server.url("");
    let cams: Vec<(String, f64)> = (0..8).map(|i| (format!("c{i}"), 0.0)).collect();
    let list: Vec<(&str, &str, f64)> = cams
        .iter()
        .map(|(id, f)| (id.as_str(), url.as_str(), *f))
        .collect();
    let admin = common::stable_port();
    let cfg = config(broker.port, "cap", &list, "")
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let mut d = Daemon::start(&cfg);
    // Two status periods: the second measures a full period of steady state.
    let measured = |m: &[common::Message]| {
        cams.iter().all(|(id, _)| {
            m.iter()
                .filter(|m| m.topic == format!("cap/{id}/status") && !m.payload.is_empty())
                .filter(|m| m.json()["fps"]["classified"].as_f64().unwrap_or(0.0) > 0.0)
                .count()
                >= 2
        })
    };
    assert!(sub.wait_until(PATIENCE, measured), "{}", d.stderr());
    let (code, metrics) = common::http_get(admin, "/metrics");
    assert_eq!(code, 200);
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());

    let mut rates = Vec::new();
    for (id, _) in &cams {
        let last = sub
            .on(&format!("cap/{id}/status"))
            .into_iter()
            .filter(|m| !m.payload.is_empty())
            .map(|m| m.json())
            .rfind(|v| v["state"] == "streaming" && v["fps"]["classified"].as_f64() > Some(0.0))
            .expect("a measured status");
        let demand = last["fps"]["demand"].as_f64().expect("demand");
        let got = last["fps"]["classified"].as_f64().expect("classified");
        assert_eq!(demand, 25.0, "{id}: the clip's frame rate is the demand");
        rates.push(got);
    }
    let total: f64 = rates.iter().sum();
    assert!(
        total < 0.9 * 200.0,
        "this test needs more demand than capacity; got {total:.1} of 200 frames/s"
    );
    let mean = total / rates.len() as f64;
    for r in &rates {
        assert!(
            (r - mean).abs() <= 0.05 * mean,
            "unfair shares (±5% of {mean:.1}): {rates:?}"
        );
    }
    assert!(
        d.stderr().contains("pipeline at capacity"),
        "the shortfall is logged:\n{}",
        d.stderr()
    );
    for (id, _) in &cams {
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
