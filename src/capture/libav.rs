//! Network streams read with FFmpeg's libraries directly (`ffmpeg-next`): packets are
//! demuxed, and only those the [`KeyframePolicy`] wants reach the decoder; a decoded frame
//! is converted to BGR only when the fps gate admits it. One decoder thread per camera
//! (FFmpeg would otherwise start one per CPU for every camera, each holding its own
//! frames).
//!
//! Every blocking call is bounded: FFmpeg's interrupt callback aborts an open that takes
//! longer than `open_timeout_s`, a read that waits longer than `stall_timeout_s`, and
//! either at once when the camera is stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_next as ff;
use opencv::core::{Mat, Scalar, CV_8UC3};
use opencv::prelude::*;

use super::decode::{Change, DecodeMode, Decoding, KeyframePolicy};

/// What the interrupt callback reads: a deadline for the call in progress and the stop
/// flags.
#[derive(Debug)]
pub struct Watch {
    epoch: Instant,
    /// Milliseconds since `epoch` after which a blocking call gives up.
    deadline_ms: AtomicU64,
    cancel: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    pub fn new(cancel: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Arc<Watch> {
        Arc::new(Watch {
            epoch: Instant::now(),
            deadline_ms: AtomicU64::new(u64::MAX),
            cancel,
            stop,
        })
    }

    /// The next blocking call may take `d`.
    fn arm(&self, d: Duration) {
        let ms = (self.epoch.elapsed() + d).as_millis() as u64;
        self.deadline_ms.store(ms, Ordering::Relaxed);
    }

    fn expired(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
            || self.stop.load(Ordering::Relaxed)
            || self.epoch.elapsed().as_millis() as u64 > self.deadline_ms.load(Ordering::Relaxed)
    }
}

/// The reviewed FFI needs of this backend: `ffmpeg-next` opens an input either with
/// options or with an interrupt callback, and a camera needs both; its scaler writes only
/// into a frame of its own, where the image is wanted in the `Mat` handed on (a second
/// frame-sized buffer per camera, and a copy, otherwise); and it does not say whether the
/// codec parameters carry extradata.
#[allow(unsafe_code)]
mod ffi {
    use std::ffi::CString;
    use std::os::raw::{c_int, c_void};
    use std::ptr;
    use std::sync::Arc;

    use ff::ffi as sys;
    use ffmpeg_next as ff;

    use super::Watch;

    extern "C" fn interrupted(opaque: *mut c_void) -> c_int {
        // SAFETY: `opaque` is the `Watch` that `Reader` keeps alive (in an `Arc`) for as
        // long as the format context exists; only atomics are read through it.
        let watch = unsafe { &*(opaque as *const Watch) };
        c_int::from(watch.expired())
    }

    /// `avformat_open_input` + `avformat_find_stream_info` with `options` and an interrupt
    /// callback reading `watch`, as `ffmpeg_next::format::input_with_dictionary` does.
    pub fn open_input(
        url: &str,
        options: ff::Dictionary,
        watch: &Arc<Watch>,
    ) -> Result<ff::format::context::Input, ff::Error> {
        let url = CString::new(url).map_err(|_| ff::Error::InvalidData)?;
        // SAFETY: the context is allocated here and either handed to `Input` (which
        // closes it) or freed by `avformat_open_input` / `avformat_close_input` on
        // failure; the dictionary is owned again after the call; the callback's opaque
        // pointer outlives the context (see `interrupted`).
        unsafe {
            let mut ps = sys::avformat_alloc_context();
            if ps.is_null() {
                return Err(ff::Error::Other {
                    errno: libc::ENOMEM,
                });
            }
            (*ps).interrupt_callback = sys::AVIOInterruptCB {
                callback: Some(interrupted),
                opaque: Arc::as_ptr(watch) as *mut c_void,
            };
            let mut opts = options.disown();
            let res = sys::avformat_open_input(&mut ps, url.as_ptr(), ptr::null_mut(), &mut opts);
            drop(ff::Dictionary::own(opts));
            if res < 0 {
                return Err(ff::Error::from(res));
            }
            let found = sys::avformat_find_stream_info(ps, ptr::null_mut());
            if found < 0 {
                sys::avformat_close_input(&mut ps);
                return Err(ff::Error::from(found));
            }
            Ok(ff::format::context::Input::wrap(ps))
        }
    }

    /// Whether the codec parameters carry the stream's setup (H.264's SPS and PPS, from
    /// the SDP or the container), so that a decoder opened from them can start at any
    /// keyframe even when the stream does not repeat them.
    pub fn has_extradata(params: &ff::codec::Parameters) -> bool {
        // SAFETY: `params` owns a valid AVCodecParameters for as long as it lives; one
        // integer field is read.
        unsafe { (*params.as_ptr()).extradata_size > 0 }
    }

    /// Converts all of `frame` with `scaler` (made for the frame's size and format, to
    /// BGR24 of the same size) into `dst`: rows of `stride` bytes.
    pub fn scale_into(
        scaler: &mut ff::software::scaling::Context,
        frame: &ff::frame::Video,
        dst: &mut [u8],
        stride: usize,
    ) -> Result<(), ff::Error> {
        let (input, out) = (scaler.input(), scaler.output());
        let row = out.width as usize * 3;
        let rows = out.height as usize;
        let fits = out.format == ff::format::Pixel::BGR24
            && (out.width, out.height) == (frame.width(), frame.height())
            && (input.width, input.height, input.format)
                == (frame.width(), frame.height(), frame.format())
            && rows > 0
            && stride >= row
            && dst.len() >= stride * (rows - 1) + row;
        let stride = c_int::try_from(stride).map_err(|_| ff::Error::InvalidData)?;
        if !fits {
            return Err(ff::Error::InvalidData);
        }
        let dst_data = [
            dst.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        ];
        let dst_stride = [stride, 0, 0, 0];
        // SAFETY: the scaler converts the frame's size and format (checked above) and
        // writes `rows` rows of `row` bytes, `stride` apart, into one plane, which `dst`
        // holds (checked above). The frame's planes are only read; a frame that holds no
        // picture has a null first plane, refused here. Both outlive the call.
        let done = unsafe {
            let f = frame.as_ptr();
            if (*f).data[0].is_null() {
                return Err(ff::Error::InvalidData);
            }
            sys::sws_scale(
                scaler.as_mut_ptr(),
                (*f).data.as_ptr() as *const *const u8,
                (*f).linesize.as_ptr(),
                0,
                rows as c_int,
                dst_data.as_ptr(),
                dst_stride.as_ptr(),
            )
        };
        if done < 0 {
            return Err(ff::Error::from(done));
        }
        Ok(())
    }
}

/// What one step of reading gave.
#[derive(Debug)]
pub enum Grab {
    /// A frame was decoded. `before` video packets were read before the one it came from
    /// (so the frame index moves on by that much first); `skipped` of them were not
    /// decoded at all.
    Frame { before: u64, skipped: u64 },
    /// Reading failed (or gave up at its deadline).
    Failed(String),
}

/// An open network stream.
pub struct Reader {
    // Field order matters: the input (and its interrupt callback) goes before `watch`.
    input: ff::format::context::Input,
    decoder: ff::decoder::Video,
    /// The stream's codec parameters, for a fresh decoder.
    params: ff::codec::Parameters,
    scaler: Option<ff::software::scaling::Context>,
    frame: ff::frame::Video,
    video: usize,
    fps: f64,
    policy: KeyframePolicy,
    /// Seconds per tick of the video stream's timestamps.
    time_base: f64,
    stall: Duration,
    epoch: Instant,
    watch: Arc<Watch>,
}

/// A video decoder for `params` with one thread.
fn open_decoder(params: &ff::codec::Parameters) -> Result<ff::decoder::Video, String> {
    let mut ctx =
        ff::codec::context::Context::from_parameters(params.clone()).map_err(|e| e.to_string())?;
    ctx.set_threading(ff::threading::Config {
        kind: ff::threading::Type::Frame,
        count: 1,
        ..Default::default()
    });
    ctx.decoder().video().map_err(|e| e.to_string())
}

/// FFmpeg's own log lines go to stderr outside the daemon's log, unredacted (some name the
/// URL, credentials included): off. What matters comes back as errors, which the camera
/// reports with its secrets scrubbed.
fn quiet() {
    ff::util::log::set_level(ff::util::log::Level::Quiet);
}

impl Reader {
    /// Opens `url` within `open_timeout` and its video decoder (one thread).
    pub fn open(
        url: &str,
        open_timeout: Duration,
        stall: Duration,
        mode: DecodeMode,
        fps: f64,
        watch: Arc<Watch>,
    ) -> Result<Reader, String> {
        ff::init().map_err(|e| e.to_string())?;
        quiet();
        let mut options = ff::Dictionary::new();
        // Like OpenCV's default: RTP over TCP when the server offers it.
        options.set("rtsp_flags", "prefer_tcp");
        watch.arm(open_timeout);
        let input = ffi::open_input(url, options, &watch).map_err(|e| e.to_string())?;
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| "no video stream".to_owned())?;
        let video = stream.index();
        let tb = stream.time_base();
        let time_base = if tb.denominator() != 0 {
            f64::from(tb.numerator()) / f64::from(tb.denominator())
        } else {
            1.0 / 90_000.0
        };
        let rate = stream.avg_frame_rate();
        let source_fps = if rate.denominator() != 0 && rate.numerator() > 0 {
            f64::from(rate.numerator()) / f64::from(rate.denominator())
        } else {
            25.0
        };
        let params = stream.parameters().clone();
        let decoder = open_decoder(&params)?;
        let epoch = Instant::now();
        Ok(Reader {
            input,
            decoder,
            params,
            scaler: None,
            frame: ff::frame::Video::empty(),
            video,
            fps: source_fps,
            policy: KeyframePolicy::new(mode, fps, f64::NAN),
            time_base,
            stall,
            epoch,
            watch,
        })
    }

    /// The stream's frame rate (25 when it does not say).
    pub fn fps(&self) -> f64 {
        self.fps
    }

    pub fn decoding(&self) -> Decoding {
        self.policy.decoding()
    }

    pub fn keyframe_interval(&self) -> Option<f64> {
        self.policy.keyframe_interval()
    }

    /// How early the fps gate may admit a frame (see [`KeyframePolicy::slack`]).
    pub fn slack(&self) -> f64 {
        self.policy.slack()
    }

    pub fn take_change(&mut self) -> Option<Change> {
        self.policy.take_change()
    }

    /// Reads packets until one decodes to a frame.
    pub fn grab(&mut self) -> Grab {
        // A packet can decode to more than one frame: those come first.
        if self.decoder.receive_frame(&mut self.frame).is_ok() {
            self.decoded();
            return Grab::Frame {
                before: 0,
                skipped: 0,
            };
        }
        let (mut before, mut skipped) = (0, 0);
        loop {
            // A packet of its own each time: `av_read_frame` fills the packet it is given
            // without releasing what that held, so reusing one would keep every packet
            // read (dropping one releases it).
            let mut packet = ff::Packet::empty();
            self.watch.arm(self.stall);
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ff::Error::Eof) => return Grab::Failed("end of stream".into()),
                Err(e) => return Grab::Failed(e.to_string()),
            }
            if packet.stream() != self.video {
                continue;
            }
            // The stream's own clock: a reader that falls behind (decoding every frame
            // of many cameras) must not measure its keyframes as further apart.
            let t = match packet.pts().or(packet.dts()) {
                Some(ts) => ts as f64 * self.time_base,
                None => self.epoch.elapsed().as_secs_f64(),
            };
            let was = self.policy.decoding();
            let wanted = self.policy.on_packet(packet.is_key(), t);
            if was == Decoding::All && self.policy.decoding() == Decoding::Keyframes {
                // From every frame to keyframes only (auto, at a keyframe): a fresh
                // decoder, so the pictures the old one kept as references go with it
                // (its buffers are never given back otherwise: ~4 MB per 1080p camera).
                // Only when the parameters carry the stream's setup (SPS/PPS): one that
                // sends it just once, at the start, could not be decoded by a new
                // decoder.
                if ffi::has_extradata(&self.params) {
                    if let Ok(fresh) = open_decoder(&self.params) {
                        self.decoder = fresh;
                    }
                }
            }
            if !wanted {
                before += 1;
                skipped += 1;
                continue;
            }
            if self.decoder.send_packet(&packet).is_err() {
                self.policy.on_decode_error();
                before += 1;
                continue;
            }
            if self.decoder.receive_frame(&mut self.frame).is_ok() {
                self.decoded();
                return Grab::Frame { before, skipped };
            }
            // No picture from this packet (yet): it still was a frame of the stream. A
            // keyframe that gives none did not decode on its own.
            self.policy.on_frame(false);
            before += 1;
        }
    }

    /// Tells the policy whether the frame is a whole picture: intra-coded. (FFmpeg also
    /// flags an intra-refresh recovery point as a key frame, but it is a P picture that
    /// needs the frames before it.)
    ///
    /// Decoding keyframes only, no later picture refers to this one: the decoder lets go
    /// of its references to it (a flush), so it decodes every keyframe into the same
    /// picture buffer instead of keeping a second one (3.1 MB at 1080p, and its tables).
    /// Not when the stream reorders pictures: the decoder may still hold one to output.
    fn decoded(&mut self) {
        let whole = matches!(
            self.frame.kind(),
            ff::picture::Type::I | ff::picture::Type::SI
        );
        self.policy.on_frame(whole);
        if whole && self.policy.decoding() == Decoding::Keyframes && !self.decoder.has_b_frames() {
            self.decoder.flush();
        }
    }

    /// The last decoded frame as 8-bit BGR in `out` (reallocated only when its size
    /// changes).
    pub fn retrieve(&mut self, out: &mut Mat) -> Result<(), String> {
        let (w, h, format) = (self.frame.width(), self.frame.height(), self.frame.format());
        let stale = self.scaler.as_ref().is_none_or(|s| {
            s.input().width != w || s.input().height != h || s.input().format != format
        });
        if stale {
            // The flags OpenCV's FFmpeg backend converts with, so the bytes match it.
            let scaler = ff::software::scaling::Context::get(
                format,
                w,
                h,
                ff::format::Pixel::BGR24,
                w,
                h,
                ff::software::scaling::Flags::BICUBIC,
            )
            .map_err(|e| e.to_string())?;
            self.scaler = Some(scaler);
        }
        let Some(scaler) = self.scaler.as_mut() else {
            return Err("no scaler".into());
        };
        let (cols, rows) = (w as i32, h as i32);
        if out.cols() != cols || out.rows() != rows || out.typ() != CV_8UC3 {
            *out = Mat::new_rows_cols_with_default(rows, cols, CV_8UC3, Scalar::all(0.0))
                .map_err(|e| e.to_string())?;
        }
        // Straight into the image handed on: no frame-sized buffer of the reader's own.
        let stride = out.mat_step().first().copied().unwrap_or(w as usize * 3);
        let dst = out.data_bytes_mut().map_err(|e| e.to_string())?;
        ffi::scale_into(scaler, &self.frame, dst, stride).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use opencv::videoio::{self, VideoCapture};

    use super::*;

    /// The images this reader hands on are the bytes OpenCV's FFmpeg backend gives for
    /// the same pictures (same decoder, same conversion), so a network camera is
    /// classified exactly as a file or device would be.
    #[test]
    fn frames_are_the_bytes_opencv_gives() {
        let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-fixtures/photos.mp4");
        let url = clip.to_str().expect("a UTF-8 path");
        assert!(clip.exists(), "{url} is missing: run scripts/fixtures");
        let flag = || Arc::new(AtomicBool::new(false));
        let watch = Watch::new(flag(), flag());
        let t = Duration::from_secs(30);
        let mut ours = Reader::open(url, t, t, DecodeMode::All, 0.0, watch).expect("opens");
        let mut cv = VideoCapture::from_file(url, videoio::CAP_FFMPEG).expect("opens");
        let (mut a, mut b) = (Mat::default(), Mat::default());
        for i in 0..30 {
            assert!(matches!(ours.grab(), Grab::Frame { .. }), "frame {i}");
            assert!(cv.read(&mut b).expect("reads"), "frame {i}");
            // Every third frame only: the others are decoded and left unconverted.
            if i % 3 != 0 {
                continue;
            }
            ours.retrieve(&mut a).expect("converts");
            assert_eq!((a.rows(), a.cols(), a.typ()), (b.rows(), b.cols(), b.typ()));
            let same = a.data_bytes().expect("continuous") == b.data_bytes().expect("continuous");
            assert!(same, "frame {i} differs from OpenCV's");
        }
    }
}
