//! The storage conformance suite against the embedded SQLite backend: every case gets a fresh
//! database file in its own temporary directory.

use ezw_storage::conformance::Harness;
use ezw_storage::sqlite::SqliteStore;

async fn sqlite() -> Harness {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = SqliteStore::open(dir.path().join("ezw.db")).expect("opening the SQLite store");
    Harness::new(store, dir)
}

ezw_storage::conformance_suite!(sqlite);
