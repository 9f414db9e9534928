//! The frames viewers see. While someone watches a camera (a `latest.jpg` request in the
//! last [`WATCH_FOR`], an open MJPEG stream) or it publishes snapshots, its preprocess
//! thread hands each prepared frame's image here instead of back to the pool; when the
//! publisher records that frame's classification, the frame becomes the camera's [`Shot`]
//! and the frames before it go back to the pool. So a shot is always a frame that was
//! classified, and its index is the one in its MQTT message. Nobody watching costs a
//! look-up of the camera's slot and two atomic loads per frame, and whatever was kept
//! goes back at the camera's next frame, or at once when a reload removes the camera.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use opencv::core::Mat;
use opencv::prelude::*;
use tokio::sync::watch;

use super::PerCamera;
use crate::pool::Pool;

/// How long one request keeps a camera watched.
pub const WATCH_FOR: Duration = Duration::from_secs(15);
/// Frames prepared but not yet classified, kept per camera (one waits for inference, one
/// is in a batch, one may be on its way to the publisher).
const PENDING: usize = 4;
/// JPEGs of one shot kept (one per size, quality and overlay asked for).
const JPEGS_KEPT: usize = 4;

/// How a JPEG of a shot is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JpegKey {
    /// Output height in pixels; `None`: the frame's own.
    pub height: Option<u32>,
    pub quality: u8,
    pub overlay: bool,
}

/// A classified frame, kept for viewers, with the JPEGs made of it.
pub struct Shot {
    pub frame: u64,
    pub captured_at: SystemTime,
    image: Mat,
    /// Locked while one is made, so viewers asking at once share one encode.
    jpegs: Mutex<VecDeque<(JpegKey, Bytes)>>,
}

impl std::fmt::Debug for Shot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shot").field("frame", &self.frame).finish()
    }
}

impl Shot {
    pub fn image(&self) -> &Mat {
        &self.image
    }

    /// (width, height) of the frame.
    pub fn size(&self) -> (u32, u32) {
        (
            self.image.cols().max(0) as u32,
            self.image.rows().max(0) as u32,
        )
    }

    /// The JPEG for `key` (with `overlay` drawn when the key asks for it): rendered the
    /// first time it is asked for, the time that took observed in `timing`.
    pub fn render(
        &self,
        key: JpegKey,
        overlay: Option<&super::jpeg::Overlay>,
        timing: &prometheus_client::metrics::histogram::Histogram,
    ) -> opencv::Result<Bytes> {
        let made = self.jpeg(key, |image| {
            let t = Instant::now();
            let jpeg = super::jpeg::render(image, key, overlay);
            timing.observe(t.elapsed().as_secs_f64());
            jpeg
        });
        made.map(|(bytes, _)| bytes)
    }

    /// The JPEG for `key`: made by `make` the first time it is asked for, the same bytes
    /// afterwards. The second return is whether `make` ran.
    pub fn jpeg<E>(
        &self,
        key: JpegKey,
        make: impl FnOnce(&Mat) -> Result<Vec<u8>, E>,
    ) -> Result<(Bytes, bool), E> {
        let mut jpegs = self.jpegs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bytes)) = jpegs.iter().find(|(k, _)| *k == key) {
            return Ok((bytes.clone(), false));
        }
        let bytes = Bytes::from(make(&self.image)?);
        if jpegs.len() >= JPEGS_KEPT {
            jpegs.pop_front();
        }
        jpegs.push_back((key, bytes.clone()));
        Ok((bytes, true))
    }
}

struct Pending {
    frame: u64,
    captured_at: SystemTime,
    image: Mat,
}

/// One camera's frames.
struct Slot {
    /// Milliseconds since [`Frames::epoch`] until which the camera counts as watched.
    watched_until: AtomicU64,
    /// Snapshots: always watched.
    always: AtomicBool,
    /// How its MQTT snapshots are encoded, when it publishes them.
    snapshot: Mutex<Option<JpegKey>>,
    /// Whether anything is kept (so an unwatched camera's frame takes no lock).
    holding: AtomicBool,
    pending: Mutex<VecDeque<Pending>>,
    shot: watch::Sender<Option<Arc<Shot>>>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            watched_until: AtomicU64::new(0),
            always: AtomicBool::new(false),
            snapshot: Mutex::new(None),
            holding: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
            shot: watch::channel(None).0,
        }
    }
}

/// Every camera's frames, by camera index.
pub struct Frames {
    epoch: Instant,
    cameras: PerCamera<Slot>,
    images: Pool<Mat>,
}

impl std::fmt::Debug for Frames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames").finish_non_exhaustive()
    }
}

impl Frames {
    /// Frames let go of go back to `images` (the pool capture decodes into).
    pub fn new(images: Pool<Mat>) -> Frames {
        Frames {
            epoch: Instant::now(),
            cameras: PerCamera::default(),
            images,
        }
    }

    pub fn images(&self) -> &Pool<Mat> {
        &self.images
    }

    fn slot(&self, camera: usize) -> Arc<Slot> {
        self.cameras.get(camera)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Someone looks at `camera`: keep its frames for the next [`WATCH_FOR`].
    pub fn watch(&self, camera: usize) {
        let until = self.now_ms() + WATCH_FOR.as_millis() as u64;
        self.slot(camera)
            .watched_until
            .fetch_max(until, Ordering::Relaxed);
    }

    /// Whether `camera` publishes MQTT snapshots, and how they are encoded: while it does,
    /// it keeps its frames whether watched or not.
    pub fn set_snapshot(&self, camera: usize, snapshot: Option<JpegKey>) {
        let slot = self.slot(camera);
        *slot.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
        slot.always.store(snapshot.is_some(), Ordering::Relaxed);
    }

    /// How `camera`'s snapshots are encoded; `None`: it publishes none.
    pub fn snapshot(&self, camera: usize) -> Option<JpegKey> {
        let slot = self.slot(camera);
        // `always` is set exactly while a spec is: no lock for a camera without snapshots.
        if !slot.always.load(Ordering::Relaxed) {
            return None;
        }
        let spec = *slot.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        spec
    }

    fn wanted(&self, slot: &Slot) -> bool {
        slot.always.load(Ordering::Relaxed)
            || slot.watched_until.load(Ordering::Relaxed) > self.now_ms()
    }

    /// A prepared frame's image: kept when the camera is watched, else handed back (the
    /// caller returns it to the pool). An unwatched camera lets go of what it kept.
    pub fn offer(
        &self,
        camera: usize,
        frame: u64,
        captured_at: SystemTime,
        image: Mat,
    ) -> Option<Mat> {
        let slot = self.slot(camera);
        if !self.wanted(&slot) {
            if slot.holding.swap(false, Ordering::Relaxed) {
                self.release(&slot);
            }
            return Some(image);
        }
        slot.holding.store(true, Ordering::Relaxed);
        let evicted = {
            let mut pending = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
            let evicted = (pending.len() >= PENDING).then(|| pending.pop_front());
            pending.push_back(Pending {
                frame,
                captured_at,
                image,
            });
            evicted.flatten()
        };
        if let Some(p) = evicted {
            self.images.give(p.image);
        }
        None
    }

    /// `camera` left the configuration: what it kept goes back to the pool now (no frame
    /// of it will come to let go of it), and it is neither watched nor snapshotted any
    /// more. Its followers see the shot go (`None`).
    pub fn forget(&self, camera: usize) {
        let slot = self.slot(camera);
        self.set_snapshot(camera, None);
        slot.watched_until.store(0, Ordering::Relaxed);
        slot.holding.store(false, Ordering::Relaxed);
        self.release(&slot);
    }

    fn release(&self, slot: &Slot) {
        let pending: Vec<Pending> = slot
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for p in pending {
            self.images.give(p.image);
        }
        if let Some(old) = slot.shot.send_replace(None) {
            self.give_back(old);
        }
    }

    fn give_back(&self, shot: Arc<Shot>) {
        // A viewer still encoding it frees it when done instead.
        if let Ok(shot) = Arc::try_unwrap(shot) {
            self.images.give(shot.image);
        }
    }

    /// The publisher recorded frame `frame` of `camera`: if it is kept, it becomes the
    /// camera's shot, and the frames before it are let go.
    pub fn classified(&self, camera: usize, frame: u64) {
        let slot = self.slot(camera);
        if !slot.holding.load(Ordering::Relaxed) {
            return;
        }
        let (found, older) = {
            let mut pending = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
            let Some(at) = pending.iter().position(|p| p.frame == frame) else {
                return;
            };
            let older: Vec<Pending> = pending.drain(..at).collect();
            (pending.pop_front(), older)
        };
        for p in older {
            self.images.give(p.image);
        }
        let Some(p) = found else { return };
        let shot = Arc::new(Shot {
            frame: p.frame,
            captured_at: p.captured_at,
            image: p.image,
            jpegs: Mutex::new(VecDeque::new()),
        });
        if let Some(old) = slot.shot.send_replace(Some(shot)) {
            self.give_back(old);
        }
    }

    /// `camera`'s latest shot, if one is kept.
    pub fn shot(&self, camera: usize) -> Option<Arc<Shot>> {
        self.slot(camera).shot.borrow().clone()
    }

    /// Follows `camera`'s shots: a receiver that wakes at each new one.
    pub fn follow(&self, camera: usize) -> watch::Receiver<Option<Arc<Shot>>> {
        self.slot(camera).shot.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use opencv::core::{Scalar, CV_8UC3};

    use super::*;

    fn image(v: f64) -> Mat {
        Mat::new_rows_cols_with_default(2, 3, CV_8UC3, Scalar::all(v)).expect("mat")
    }

    fn key(height: Option<u32>) -> JpegKey {
        JpegKey {
            height,
            quality: 75,
            overlay: false,
        }
    }

    #[test]
    fn a_shot_is_the_classified_frame_and_nothing_is_kept_unwatched() {
        let pool = Pool::new(8);
        let frames = Frames::new(pool.clone());
        let t = SystemTime::UNIX_EPOCH;
        // Unwatched: the image comes straight back.
        assert!(frames.offer(0, 1, t, image(1.0)).is_some());
        frames.classified(0, 1);
        assert!(frames.shot(0).is_none());
        frames.watch(0);
        for f in 2..=5 {
            assert!(frames.offer(0, f, t, image(f as f64)).is_none(), "kept");
        }
        frames.classified(0, 4);
        let shot = frames.shot(0).expect("frame 4 is the shot");
        assert_eq!(shot.frame, 4);
        assert_eq!(
            shot.image().at_2d::<opencv::core::Vec3b>(0, 0).expect("px")[0],
            4
        );
        // Frames 2 and 3 went back to the pool; 5 still waits for its result.
        assert_eq!(format!("{pool:?}"), "Pool { free: 2, capacity: 8 }");
        // A frame that was never kept (evicted, or before watching) changes nothing.
        frames.classified(0, 3);
        assert_eq!(frames.shot(0).map(|s| s.frame), Some(4));
        // A JPEG is made once per key.
        let key = key(None);
        let (a, made) = shot.jpeg(key, |_| Ok::<_, ()>(vec![1, 2])).expect("made");
        assert!(made);
        let (b, made) = shot.jpeg(key, |_| Ok::<_, ()>(vec![9])).expect("cached");
        assert!(!made);
        assert_eq!((&a[..], &b[..]), (&[1u8, 2][..], &[1u8, 2][..]));
        drop(shot);
        frames.classified(0, 5);
        // The replaced shot went back too.
        assert_eq!(format!("{pool:?}"), "Pool { free: 3, capacity: 8 }");
        assert!(frames.shot(1).is_none(), "cameras are apart");
    }

    #[test]
    fn a_camera_nobody_watches_lets_go_at_its_next_frame() {
        let pool = Pool::new(8);
        let frames = Frames::new(pool.clone());
        let t = SystemTime::UNIX_EPOCH;
        let key = key(Some(480));
        frames.set_snapshot(0, Some(key));
        assert_eq!(frames.snapshot(0), Some(key));
        assert!(frames.offer(0, 1, t, image(1.0)).is_none());
        frames.classified(0, 1);
        assert!(frames.shot(0).is_some());
        frames.set_snapshot(0, None);
        assert_eq!(frames.snapshot(0), None);
        assert!(frames.offer(0, 2, t, image(2.0)).is_some());
        assert!(frames.shot(0).is_none());
        assert_eq!(format!("{pool:?}"), "Pool { free: 1, capacity: 8 }");
    }

    #[test]
    fn a_removed_camera_lets_go_at_once() {
        let pool = Pool::new(8);
        let frames = Frames::new(pool.clone());
        let t = SystemTime::UNIX_EPOCH;
        let key = key(None);
        frames.set_snapshot(1, Some(key));
        frames.watch(1);
        for f in 1..=3 {
            assert!(frames.offer(1, f, t, image(f as f64)).is_none());
        }
        frames.classified(1, 2);
        let mut follower = frames.follow(1);
        follower.mark_unchanged();
        assert_eq!(frames.shot(1).map(|s| s.frame), Some(2));
        assert_eq!(format!("{pool:?}"), "Pool { free: 1, capacity: 8 }");
        frames.forget(1);
        // The shot (2) and the frame waiting for its result (3) went back; 1 had already.
        assert_eq!(format!("{pool:?}"), "Pool { free: 3, capacity: 8 }");
        assert!(frames.shot(1).is_none());
        assert_eq!(frames.snapshot(1), None);
        assert!(
            follower.has_changed().unwrap_or(false),
            "followers hear of it"
        );
        // A frame still on its way is not kept: nobody watches a removed camera.
        assert!(frames.offer(1, 4, t, image(4.0)).is_some());
    }
}
