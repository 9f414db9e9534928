//! A camera's open source, read in two steps: `grab` (demux and decode, or skip a frame
//! without decoding it) and `retrieve` (the BGR image, only for frames the fps gate
//! admits). Network streams use FFmpeg directly ([`super::libav`]); devices and files
//! use OpenCV's `VideoCapture` (every frame decoded; only admitted ones converted).

use std::sync::Arc;

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

use super::decode::{Change, Decoding};
use super::libav::{self, Grab, Watch};
use super::{scrub, CameraConfig, Device, Source};

pub enum Reader {
    OpenCv(VideoCapture),
    Libav(Box<libav::Reader>),
}

fn millis(d: std::time::Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

impl Reader {
    /// Opens the camera's source; every open and read is bounded by the camera's
    /// `open_timeout_s` and `stall_timeout_s`.
    pub fn open(config: &CameraConfig, watch: Arc<Watch>) -> Result<Reader, String> {
        let source = &config.source;
        let timeouts = Vector::from_slice(&[
            videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
            millis(config.open_timeout),
            videoio::CAP_PROP_READ_TIMEOUT_MSEC,
            millis(config.stall_timeout),
        ]);
        let cap = match source {
            Source::Network(url) => {
                return libav::Reader::open(
                    url,
                    config.open_timeout,
                    config.stall_timeout,
                    config.decode,
                    config.fps,
                    watch,
                )
                .map(|r| Reader::Libav(Box::new(r)))
                .map_err(|e| scrub(&e, source));
            }
            Source::Device(Device::Index(i)) => {
                VideoCapture::new_with_params(*i, videoio::CAP_ANY, &timeouts)
            }
            Source::Device(Device::Path(p)) => {
                VideoCapture::from_file_with_params(p, videoio::CAP_V4L2, &timeouts)
            }
            Source::File(p) => {
                VideoCapture::from_file_with_params(p, videoio::CAP_FFMPEG, &Vector::new())
            }
        }
        .map_err(|e| scrub(&e.to_string(), source))?;
        match cap.is_opened() {
            Ok(true) => Ok(Reader::OpenCv(cap)),
            Ok(false) => Err("cannot open the source".to_owned()),
            Err(e) => Err(scrub(&e.to_string(), source)),
        }
    }

    /// The source's frame rate (25 when it does not say).
    pub fn fps(&self) -> f64 {
        match self {
            Reader::OpenCv(cap) => cap
                .get(videoio::CAP_PROP_FPS)
                .ok()
                .filter(|f| f.is_finite() && *f > 0.0)
                .unwrap_or(25.0),
            Reader::Libav(r) => r.fps(),
        }
    }

    /// The next frame, decoded but not yet converted.
    pub fn grab(&mut self) -> Grab {
        match self {
            Reader::OpenCv(cap) => match cap.grab() {
                Ok(true) => Grab::Frame {
                    before: 0,
                    skipped: 0,
                },
                Ok(false) => Grab::Failed("no frame".into()),
                Err(e) => Grab::Failed(e.to_string()),
            },
            Reader::Libav(r) => r.grab(),
        }
    }

    /// The grabbed frame as 8-bit BGR; false when it cannot be converted.
    pub fn retrieve(&mut self, out: &mut Mat) -> bool {
        match self {
            Reader::OpenCv(cap) => matches!(cap.retrieve(out, 0), Ok(true)) && !out.empty(),
            Reader::Libav(r) => r.retrieve(out).is_ok(),
        }
    }

    /// What is decoded now, and the measured keyframe interval.
    pub fn decoding(&self) -> (Decoding, Option<f64>) {
        match self {
            Reader::OpenCv(_) => (Decoding::All, None),
            Reader::Libav(r) => (r.decoding(), r.keyframe_interval()),
        }
    }

    /// How early the fps gate may admit a frame.
    pub fn slack(&self) -> f64 {
        match self {
            Reader::OpenCv(_) => 0.0,
            Reader::Libav(r) => r.slack(),
        }
    }

    pub fn take_change(&mut self) -> Option<Change> {
        match self {
            Reader::OpenCv(_) => None,
            Reader::Libav(r) => r.take_change(),
        }
    }
}
