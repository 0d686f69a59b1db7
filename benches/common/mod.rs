//! Helpers shared by the benchmark binaries (each includes this module with `mod common;`).

#![allow(dead_code)]

use std::collections::BTreeMap;

use ezw::model::{BillingState, Organization};
use ezw::service::NewOrganization;
use ezw::{Ezw, Principal, Secret};

/// CPU seconds (user + system) per thread name of this process; tokio's worker threads are
/// summed under `tokio_label`.
pub(crate) fn thread_cpu(tokio_label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let tick = 100.0; // USER_HZ on Linux
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_owned();
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            let cpu = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
                + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            let key = if name.starts_with("tokio-r") { tokio_label.to_owned() } else { name };
            *out.entry(key).or_insert(0.0) += cpu / tick;
        }
    }
    out
}

/// Peak resident memory of this process (MiB).
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `12,345` for 12345.4.
pub(crate) fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An active organization with `line_slots` slots, and its owner's principal.
pub(crate) async fn bench_org(ezw: &Ezw, line_slots: u32) -> (Organization, Principal) {
    let (org, owner) = ezw
        .orgs()
        .create_organization(NewOrganization {
            name: "Bench".into(),
            slug: None,
            owner_email: "bench@bench.example".into(),
            owner_name: "Bench".into(),
            owner_password: Secret::new("bench-password"),
            billing_state: BillingState::Active,
            line_slots,
        })
        .await
        .unwrap();
    let principal = ezw.auth().member_principal(&org.id, &owner.id).await.unwrap();
    (org, principal)
}
