//! Every configuration file shipped in config/ is valid, and `check-config` says so.

mod common;

use streamclassd::config::Config;

#[test]
fn every_shipped_config_parses_and_validates() {
    let dir = common::repo().join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = Config::load(&path)
                .unwrap_or_else(|e| panic!("{} is invalid: {e}", path.display()));
            assert!(!cfg.cameras.is_empty());
            let (code, out) = common::run_cli(&["check-config", path.to_str().expect("utf8")], &[]);
            assert_eq!(code, 0, "check-config {}: {out}", path.display());
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected example.toml and demo.toml, checked {checked}"
    );
}
