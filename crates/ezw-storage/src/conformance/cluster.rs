//! Conformance cases for the multi-node part of the store (issue 7): session leases.

use ezw_core::ports::SessionLease;

use super::*;

/// One node at a time holds a line's session lease; the holder renews it, a lease that ran out
/// is taken over, a release frees it at once, and only the holder can release it.
pub async fn session_leases_are_exclusive_renewable_and_expire(store: Arc<dyn Store>) {
    let t = tenant(store.as_ref()).await;
    let line = add_line(store.as_ref(), &t.org.id, "+14155550701", secs(0)).await;
    let until = |s: i64| secs(s);

    assert!(store.get_session_lease(&line.id).await.must("get_session_lease").is_none(), "no lease at first");
    let a = store.acquire_session_lease(&line.id, "node-a", secs(10), until(40)).await.must("acquire");
    assert_eq!(
        a,
        SessionLease {
            line_id: line.id.clone(),
            holder: "node-a".into(),
            lease_until: until(40),
            acquired_at: secs(10)
        }
    );

    // Another node is refused while the lease runs, and learns who holds it.
    let b = store.acquire_session_lease(&line.id, "node-b", secs(20), until(50)).await.must("acquire by b");
    assert_eq!((b.holder.as_str(), b.lease_until), ("node-a", until(40)), "b is refused");

    // The holder renews; acquired_at stays.
    let renewed = store.acquire_session_lease(&line.id, "node-a", secs(30), until(60)).await.must("renew");
    assert_eq!((renewed.holder.as_str(), renewed.lease_until, renewed.acquired_at), ("node-a", until(60), secs(10)));

    // Only the holder may release.
    assert!(!store.release_session_lease(&line.id, "node-b").await.must("release by b"), "b holds nothing");
    assert_eq!(store.get_session_lease(&line.id).await.must("get").map(|l| l.holder), Some("node-a".into()));

    // After the lease runs out (node-a stopped renewing), node-b takes over.
    let taken = store.acquire_session_lease(&line.id, "node-b", secs(60), until(90)).await.must("take over");
    assert_eq!((taken.holder.as_str(), taken.lease_until, taken.acquired_at), ("node-b", until(90), secs(60)));
    let late = store.acquire_session_lease(&line.id, "node-a", secs(61), until(91)).await.must("a comes back");
    assert_eq!(late.holder, "node-b", "the old holder cannot renew a lease it lost");

    // A release frees it at once.
    assert!(store.release_session_lease(&line.id, "node-b").await.must("release"));
    assert!(store.get_session_lease(&line.id).await.must("get").is_none());
    let again = store.acquire_session_lease(&line.id, "node-a", secs(62), until(92)).await.must("reacquire");
    assert_eq!((again.holder.as_str(), again.acquired_at), ("node-a", secs(62)));
}

/// Concurrent acquisitions of a free line: exactly one node wins.
pub async fn concurrent_session_lease_acquisitions_have_one_winner(store: Arc<dyn Store>) {
    let t = tenant(store.as_ref()).await;
    let line = add_line(store.as_ref(), &t.org.id, "+14155550702", secs(0)).await;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (store, line) = (store.clone(), line.id.clone());
        tasks.push(tokio::spawn(async move {
            let node = format!("node-{n}");
            let lease = store.acquire_session_lease(&line, &node, secs(10), secs(40)).await.must("acquire");
            (node, lease.holder)
        }));
    }
    let mut winners = HashSet::new();
    for task in tasks {
        let (node, holder) = task.await.expect("task");
        if node == holder {
            winners.insert(node);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one node holds the lease: {winners:?}");
}

/// Session lines are listed across organizations by provider kind, without archived lines.
pub async fn session_lines_are_listed_by_provider_kind(store: Arc<dyn Store>) {
    let (t1, t2) = (tenant(store.as_ref()).await, tenant(store.as_ref()).await);
    let a = add_line(store.as_ref(), &t1.org.id, "+14155550703", secs(1)).await;
    let b = add_line(store.as_ref(), &t2.org.id, "+14155550704", secs(2)).await;
    let archived = add_line(store.as_ref(), &t2.org.id, "+14155550705", secs(3)).await;
    store
        .set_line_state(&t2.org.id, &archived.id, LifecycleState::Archived, None, secs(4))
        .await
        .must("archive")
        .expect("line exists");
    let ours = [a.id.clone(), b.id.clone(), archived.id.clone()];
    let listed: Vec<LineId> = store
        .list_session_lines(&[ProviderKind::Simulator])
        .await
        .must("list_session_lines")
        .into_iter()
        .map(|l| l.id)
        .filter(|id| ours.contains(id))
        .collect();
    assert_eq!(listed, [a.id.clone(), b.id.clone()], "both organizations, oldest first, not archived");
    let none = store.list_session_lines(&[ProviderKind::Meta]).await.must("list meta");
    assert!(none.iter().all(|l| !ours.contains(&l.id)), "another kind lists none of them");
}
