//! Giving memory back to the operating system after loading a model.
//!
//! Loading an ONNX model parses the whole file into protobuf messages, copies every
//! initializer into ONNX Runtime's own tensors and then frees the parse. glibc keeps the
//! freed pages in the process's heap, so without this a ResNet-50 (102 MB file) leaves
//! ~100 MB of free but resident memory behind for the life of the daemon.

/// Returns free heap pages to the operating system (glibc's `malloc_trim`); a no-op on
/// other C libraries.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own free lists; it is
    // thread-safe (it locks each arena) and may be called at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Buffers at least this large get pages of their own from the kernel and give them back
/// when freed.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Sets glibc's allocator up for a daemon whose large buffers come and go per camera:
/// decoder pictures, images and tensors of [`MMAP_THRESHOLD`] or more are mapped on their
/// own and unmapped when freed. glibc's default threshold grows to the largest buffer
/// freed so far (up to 32 MB), after which a 6 MB image is carved out of the freeing
/// thread's heap instead, and the holes such buffers leave in one heap per thread stay
/// resident (2–4 MB per 1080p camera, measured with glibc's tunable before this call
/// existed). Call before any thread starts; a no-op on other C libraries.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes no pointers and only sets a glibc tunable; called once at
    // start-up.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
