//! The storage conformance suite against PostgreSQL (`EZW_TEST_POSTGRES_URL`, for example
//! `postgres://postgres@127.0.0.1:5432/test`). Every case gets its own schema, dropped when the
//! case ends. Without the variable the cases fail: CI must not pass by skipping them.

use ezw_storage::conformance::Harness;
use ezw_storage::postgres::{PgOptions, PgStore};

/// Drops the case's schema when the case ends.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Dropped inside the case's runtime: do the blocking work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

async fn postgres() -> Harness {
    let url = std::env::var("EZW_TEST_POSTGRES_URL")
        .expect("EZW_TEST_POSTGRES_URL must point at a PostgreSQL database (see docs/operations.md)");
    let schema = format!("ezw_conf_{}_{}", std::process::id(), rand_suffix());
    let store = PgStore::connect(PgOptions::new(url.clone()).schema(schema.clone()).pool_size(4))
        .await
        .expect("connecting to PostgreSQL at EZW_TEST_POSTGRES_URL");
    Harness::new(store, DropSchema { url, schema })
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}_{}", NEXT.fetch_add(1, Ordering::Relaxed), nanos)
}

ezw_storage::conformance_suite!(postgres);
