//! Exit codes (sysexits.h), documented in the README, and which error gets which.

use streamclassd::config::ConfigError;
use streamclassd::inference::ModelError;
use streamclassd::labels::LabelsError;
use streamclassd::pipeline::RunError;

/// Invalid configuration or command line.
pub const USAGE: u8 = 64;
/// A model, labels file or file source that is unusable, or a file that cannot be decoded.
pub const DATAERR: u8 = 65;
/// A configuration file, model, labels file or file source that does not exist or cannot
/// be read.
pub const NOINPUT: u8 = 66;
/// The ONNX Runtime library cannot be found or loaded.
pub const UNAVAILABLE: u8 = 69;
/// A stage failed unexpectedly (a bug): systemd should restart the daemon.
pub const SOFTWARE: u8 = 70;
/// The operating system refused a thread or runtime.
pub const OSERR: u8 = 71;
/// The spool directory cannot be created or read.
pub const CANTCREAT: u8 = 73;
/// Messages could not be delivered to the broker before the grace period ended.
pub const TEMPFAIL: u8 = 75;

/// A configuration that cannot be read is missing input; one that is wrong is a usage
/// error.
pub fn of_config(e: &ConfigError) -> u8 {
    match e {
        ConfigError::Read { .. } => NOINPUT,
        ConfigError::Syntax { .. } | ConfigError::Invalid { .. } => USAGE,
    }
}

pub fn of_run(e: &RunError) -> u8 {
    match e {
        RunError::SourceMissing { .. }
        | RunError::PasswordFile { .. }
        | RunError::NoCredentials { .. }
        | RunError::EmptyToken
        | RunError::TlsFile { .. } => NOINPUT,
        RunError::Admin { .. } => UNAVAILABLE,
        RunError::Spool { .. } => CANTCREAT,
        RunError::Model(
            ModelError::RuntimeMissing(_)
            | ModelError::RuntimeLoad { .. }
            | ModelError::ProviderUnavailable { .. },
        ) => UNAVAILABLE,
        RunError::Model(ModelError::Unreadable { .. }) => NOINPUT,
        RunError::Model(ModelError::CropMismatch { .. }) => USAGE,
        RunError::Model(_) => DATAERR,
        RunError::Labels(LabelsError::Unreadable { .. }) => NOINPUT,
        RunError::Labels(_) => DATAERR,
        RunError::Spawn { .. } => OSERR,
        RunError::StageFailed(_) => SOFTWARE,
        RunError::CameraFailed(_) => DATAERR,
        RunError::Undelivered(_) => TEMPFAIL,
    }
}
