//! The `streamclassd` binary: parse arguments, set up logging and signals, run, map
//! errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use streamclassd::config::Config;
use streamclassd::pipeline::{self, RunOptions};

mod exit;

/// Classify video frames with an ONNX ResNet and publish the top-5 labels to MQTT.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run(RunArgs),
    /// Validate a configuration file without opening any camera, model or broker.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/streamclassd/streamclassd.toml")]
    config: PathBuf,
    /// ONNX Runtime shared library (libonnxruntime.so).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_library: Option<PathBuf>,
    /// How long shutdown may wait for in-flight frames and the broker.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives;
    /// overrides `[log] level` in the config.
    #[arg(long, env = "STREAMCLASSD_LOG")]
    log: Option<String>,
    /// Write what the run did (per camera: frames, published, dropped, stage times) to
    /// this file as JSON when it stops.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
}

/// Logs go to journald (structured fields) when systemd connected stderr to the journal,
/// to stderr otherwise. A filter that does not parse is an error.
fn init_logging(filter: &str) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = streamclassd::config::log_filter(filter)
        .map_err(|e| format!("--log / STREAMCLASSD_LOG {filter:?}: {e}"))?;
    if streamclassd::service::stderr_is_journal() {
        if let Ok(journal) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(journal.with_syslog_identifier("streamclassd".into()))
                .init();
            return Ok(());
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

fn main() -> ExitCode {
    streamclassd::memory::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    };
    ExitCode::from(code)
}

/// A channel rung after every SIGTERM, SIGINT and SIGHUP (by a thread of its own, once
/// the handlers that set the flags have run).
fn signal_waker() -> std::io::Result<crossbeam_channel::Receiver<()>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                let _ = tx.try_send(());
            }
        })?;
    Ok(rx)
}

fn check_config(file: &std::path::Path) -> u8 {
    match Config::load(file) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} camera(s), model {})",
                file.display(),
                cfg.cameras.len(),
                cfg.model.path.display()
            );
            0
        }
        Err(e) => {
            eprintln!("streamclassd: {e}");
            exit::of_config(&e)
        }
    }
}

fn run(args: RunArgs) -> u8 {
    let cfg = match Config::load(&args.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("streamclassd: {e}");
            return exit::of_config(&e);
        }
    };
    if let Err(e) = init_logging(args.log.as_deref().unwrap_or(&cfg.log_level)) {
        eprintln!("streamclassd: {e}");
        return exit::USAGE;
    }
    // TLS to the broker uses rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cancel = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while shutting down exits at once.
        let registered =
            signal_hook::flag::register_conditional_shutdown(signal, 1, cancel.clone())
                .and_then(|_| signal_hook::flag::register(signal, cancel.clone()));
        if let Err(e) = registered {
            eprintln!("streamclassd: cannot install signal handler: {e}");
            return exit::OSERR;
        }
    }
    // SIGHUP (systemctl reload) re-reads the configuration.
    let reload = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()) {
        eprintln!("streamclassd: cannot install signal handler: {e}");
        return exit::OSERR;
    }
    // The flags are set in the signal handlers; this thread then wakes the supervisor.
    let wake = match signal_waker() {
        Ok(wake) => wake,
        Err(e) => {
            eprintln!("streamclassd: cannot install signal handler: {e}");
            return exit::OSERR;
        }
    };
    let opts = RunOptions {
        ort_library: args.ort_library,
        shutdown_grace: args.shutdown_grace,
        config_path: Some(args.config),
        reload,
        summary_json: args.summary_json,
        wake: Some(wake),
    };
    match pipeline::run(cfg, opts, cancel) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("streamclassd: error: {e}");
            exit::of_run(&e)
        }
    }
}
