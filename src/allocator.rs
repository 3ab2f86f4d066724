//! Large buffers go back to the operating system when they are freed.
//!
//! Why: a photo request is decoded into tens of MiB of pixels (one 12-megapixel RGB image is
//! 34 MiB). glibc serves an allocation that large with `mmap` and unmaps it on free, but only until
//! the first such buffer is freed: it then raises its mmap threshold to that buffer's size (up to
//! 32 MiB) and serves later ones from its heaps, one per thread, where freed pixels stay resident
//! and fragment. With several workers, librdkafka's and ONNX Runtime's threads, resident memory
//! then depends on timing rather than on the batch budget. A fixed threshold turns the adjustment
//! off: every buffer of 1 MiB or more is mapped on its own and returned when freed.
//!
//! An operator's own setting (`MALLOC_MMAP_THRESHOLD_` or a `glibc.malloc.mmap_threshold`
//! tunable) wins. Other C libraries and allocators are left alone.

/// Allocations of this size or more are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 1 << 20;
/// Free memory at the top of a heap beyond this is given back to the operating system.
pub const TRIM_THRESHOLD_BYTES: i32 = 4 << 20;

/// Applies the thresholds above; call it first thing in `main`, before any thread starts.
/// Returns whether they were applied (false: not glibc, or the operator set their own).
pub fn return_large_buffers_to_the_os() -> bool {
    if operator_chose_threshold(std::env::var("MALLOC_MMAP_THRESHOLD_").ok(), std::env::var("GLIBC_TUNABLES").ok()) {
        return false;
    }
    set_thresholds()
}

fn operator_chose_threshold(env_threshold: Option<String>, tunables: Option<String>) -> bool {
    env_threshold.is_some() || tunables.is_some_and(|t| t.contains("glibc.malloc.mmap_threshold"))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only changes glibc's allocation parameters; it is called before any thread
    // of ours exists, with parameter names and values glibc documents.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_own_threshold_is_kept() {
        assert!(operator_chose_threshold(Some("65536".into()), None));
        assert!(operator_chose_threshold(None, Some("glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1".into())));
        assert!(!operator_chose_threshold(None, Some("glibc.malloc.arena_max=2".into())));
        assert!(!operator_chose_threshold(None, None));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_thresholds() {
        assert!(set_thresholds());
    }
}
