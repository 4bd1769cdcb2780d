//! Test-only fault injection for the SQLite backend (cargo feature `fault-injection`): a test
//! marks one database down, and from then on its writes and its readiness ping fail the way a
//! lost database does (503 SERVICE_UNAVAILABLE), until the test marks it up again. Keyed by the
//! database file, so tests running side by side in one process do not disturb each other.
//! Without the feature `check` is a no-op the compiler removes.

use std::path::Path;

use strata_core::error::Result;

#[cfg(feature = "fault-injection")]
mod switch {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    fn down() -> &'static Mutex<HashSet<PathBuf>> {
        static DOWN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
        DOWN.get_or_init(Default::default)
    }

    /// Marks the SQLite database in `dir` down (`true`) or up again.
    pub fn set_down(dir: &Path, is_down: bool) {
        let file = dir.join(crate::SQLITE_FILE);
        let mut set = down().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if is_down {
            set.insert(file);
        } else {
            set.remove(&file);
        }
    }

    pub(crate) fn is_down(file: &Path) -> bool {
        down().lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(file)
    }
}

#[cfg(feature = "fault-injection")]
pub use switch::set_down;

/// Fails as a lost database would when the test marked this database file down.
#[cfg_attr(not(feature = "fault-injection"), inline(always))]
pub(crate) fn check(file: &Path) -> Result<()> {
    #[cfg(feature = "fault-injection")]
    if switch::is_down(file) {
        return Err(strata_core::error::CoreError::unavailable("database: injected fault (the test marked it down)"));
    }
    let _ = file;
    Ok(())
}
