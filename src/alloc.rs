//! Allocator tuning for a long-running server on glibc.
//!
//! Password hashing allocates 19 MiB per hash (argon2id's memory cost). glibc's default
//! raises its mmap threshold after the first such block is freed, so later blocks come from
//! the per-thread arenas and stay there: with arenas changing hands between threads, a few
//! dozen logins left ~300 MiB resident on an idle server. A fixed threshold (which also turns
//! the dynamic adjustment off) keeps large blocks in mmap, returned on free, and a small
//! arena count bounds the rest of the fragmentation. (A 4 MiB trim threshold was tried: it saved
//! little CPU and kept up to 16 MiB of free memory resident, so the default 128 KiB stays.)

/// Applies the tuning; call first thing in `main`.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
