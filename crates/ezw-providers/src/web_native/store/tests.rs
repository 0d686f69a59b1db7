//! The storage adapter on a real SQLite store: every record kind round-trips, values are sealed
//! at rest, lines are isolated, and a session's state survives a restart.

use std::path::Path;
use std::sync::Arc;

use ezw_core::crypto::{derive_key, SecretCipher};
use ezw_core::ids::{LineId, OrganizationId, UserId};
use ezw_core::model::{BillingState, LifecycleState, Line, Organization, ProviderKind, User};
use ezw_core::ports::{SessionStore, StateSelector, Store};
use ezw_core::{PhoneNumber, Timestamp};
use ezw_storage::sqlite::SqliteStore;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceInfo, DeviceListRecord, DeviceStore, LidPnMappingEntry, MsgSecretEntry,
    MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore, SignalStore, TcTokenEntry,
};
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::Jid;

use super::{kind, EzwBackend};

fn cipher(master: &[u8]) -> SecretCipher {
    SecretCipher::new(&derive_key(master, "ezw credentials v1"))
}

fn at() -> Timestamp {
    Timestamp::from_unix_ms(1_700_000_000_000)
}

/// An organization with one session line.
pub(crate) async fn tenant(store: &dyn Store, number: &str) -> (OrganizationId, LineId) {
    let now = at();
    let org_id = OrganizationId::generate(now.unix_ms());
    let org = Organization {
        name: "Native Org".into(),
        slug: format!("native-{}", org_id.as_str().to_ascii_lowercase()),
        billing_state: BillingState::Active,
        line_slots: 5,
        plan: ezw_core::model::DEFAULT_PLAN.into(),
        created_at: now,
        id: org_id.clone(),
    };
    let user_id = UserId::generate(now.unix_ms());
    let owner = User {
        email: format!("{}@native.example", user_id.as_str().to_ascii_lowercase()),
        display_name: "Owner".into(),
        password_hash: None,
        created_at: now,
        id: user_id,
    };
    store.create_organization(&org, &owner, true).await.expect("create_organization");
    let line = add_line(store, &org_id, number).await;
    (org_id, line)
}

async fn add_line(store: &dyn Store, org: &OrganizationId, number: &str) -> LineId {
    let now = at();
    let line = Line {
        id: LineId::generate(now.unix_ms()),
        organization_id: org.clone(),
        display_name: format!("Line {number}"),
        phone_number: PhoneNumber::parse(number).expect("phone"),
        provider_kind: ProviderKind::WebSession,
        provider_config: serde_json::json!({}),
        lifecycle_state: LifecycleState::Created,
        state_reason: None,
        default_assignee_id: None,
        pacing: None,
        created_at: now,
        updated_at: now,
    };
    store.insert_line(&line).await.expect("insert_line");
    line.id
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    org: OrganizationId,
    line: LineId,
    backend: EzwBackend,
}

fn open(path: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(path.join("ezw.db")).expect("open sqlite"))
}

fn backend(store: &Arc<dyn Store>, org: &OrganizationId, line: &LineId) -> EzwBackend {
    let store: Arc<dyn SessionStore> = store.clone();
    EzwBackend::new(store, cipher(b"master key"), org.clone(), line.clone())
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let (org, line) = tenant(&*store, "+15550100001").await;
    let backend = backend(&store, &org, &line);
    Fixture { _dir: dir, store, org, line, backend }
}

fn device_json(device: &Device) -> serde_json::Value {
    serde_json::to_value(device).expect("device serializes")
}

fn paired_device() -> Device {
    let mut device = Device::new();
    device.pn = Some("15550100001:7@s.whatsapp.net".parse::<Jid>().expect("jid"));
    device.lid = Some("100000012345678:7@lid".parse::<Jid>().expect("jid"));
    device.push_name = "Billing".into();
    device.next_pre_key_id = 812;
    device.login_counter = 3;
    device
}

#[tokio::test]
async fn device_round_trips() {
    let f = fixture().await;
    let b = &f.backend;
    assert!(!b.exists().await.unwrap(), "no device before create");
    assert!(b.load().await.unwrap().is_none());
    b.create().await.unwrap();
    assert!(b.exists().await.unwrap(), "create materializes a device");
    let created = b.load().await.unwrap().expect("created device loads");
    b.create().await.unwrap();
    let again = b.load().await.unwrap().expect("device");
    assert_eq!(device_json(&again), device_json(&created), "a second create keeps the device");

    let device = paired_device();
    b.save(&device).await.unwrap();
    let loaded = b.load().await.unwrap().expect("device");
    assert_eq!(device_json(&loaded), device_json(&device));
    assert_eq!(loaded.pn, device.pn);
    assert_eq!(loaded.identity_key.public_key, device.identity_key.public_key);

    let mut renamed = device.clone();
    renamed.push_name = "Support".into();
    b.save(&renamed).await.unwrap();
    assert_eq!(b.load().await.unwrap().expect("device").push_name, "Support", "save overwrites");

    assert_eq!(b.clear().await.unwrap(), 1);
    assert!(!b.exists().await.unwrap(), "clear deletes the device");
}

#[tokio::test]
async fn signal_records_round_trip() {
    let f = fixture().await;
    let b = &f.backend;
    let addr = "15550100002.0:1";

    // Identities.
    assert_eq!(b.load_identity(addr).await.unwrap(), None);
    b.put_identity(addr, [1; 32]).await.unwrap();
    assert_eq!(b.load_identity(addr).await.unwrap(), Some([1; 32]));
    b.put_identity(addr, [2; 32]).await.unwrap();
    assert_eq!(b.load_identity(addr).await.unwrap(), Some([2; 32]), "overwrite");
    b.put_identities_batch(&[(Arc::from("a.0:1"), [3; 32]), (Arc::from("b.0:2"), [4; 32])]).await.unwrap();
    assert_eq!(b.load_identity("b.0:2").await.unwrap(), Some([4; 32]));
    b.delete_identity(addr).await.unwrap();
    assert_eq!(b.load_identity(addr).await.unwrap(), None, "delete");

    // Sessions.
    assert!(!b.has_session(addr).await.unwrap());
    b.put_session(addr, b"session-1").await.unwrap();
    assert_eq!(b.get_session(addr).await.unwrap().as_deref(), Some(&b"session-1"[..]));
    assert!(b.has_session(addr).await.unwrap());
    b.put_sessions_batch(&[(Arc::from(addr), Bytes::from_static(b"session-2")), (Arc::from("x.0:1"), Bytes::new())])
        .await
        .unwrap();
    assert_eq!(b.get_session(addr).await.unwrap().as_deref(), Some(&b"session-2"[..]), "batch overwrites");
    assert_eq!(b.get_session("x.0:1").await.unwrap().as_deref(), Some(&b""[..]), "an empty value is a value");
    b.delete_session(addr).await.unwrap();
    assert_eq!(b.get_session(addr).await.unwrap(), None);

    // Pre-keys, with the uploaded flag and the max id.
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 0, "no pre-keys: 0");
    b.store_prekey(9, b"pk-9", false).await.unwrap();
    b.store_prekeys_batch(&[(10, Bytes::from_static(b"pk-10")), (100, Bytes::from_static(b"pk-100"))], false)
        .await
        .unwrap();
    assert_eq!(b.load_prekey(9).await.unwrap().as_deref(), Some(&b"pk-9"[..]));
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 100, "numeric, not lexical, maximum");
    let batch = b.load_prekeys_batch(&[100, 11, 9]).await.unwrap();
    let batch: Vec<(u32, &[u8])> = batch.iter().map(|(id, r)| (*id, r.as_ref())).collect();
    assert_eq!(batch, vec![(100, &b"pk-100"[..]), (9, &b"pk-9"[..])], "existing keys, in the order asked");
    b.store_prekey(9, b"pk-9b", true).await.unwrap();
    assert_eq!(b.load_prekey(9).await.unwrap().as_deref(), Some(&b"pk-9b"[..]), "overwrite");
    b.remove_prekey(10).await.unwrap();
    b.mark_prekeys_uploaded(&[10, 100]).await.unwrap();
    assert_eq!(b.load_prekey(10).await.unwrap(), None, "marking does not resurrect a consumed key");
    assert_eq!(b.load_prekey(100).await.unwrap().as_deref(), Some(&b"pk-100"[..]), "marking keeps the record");
    let raw = f
        .store
        .get_session_state(&f.org, &f.line, StateSelector { kind: kind::PREKEY, scope: None, keys: None })
        .await
        .unwrap();
    assert_eq!(raw.len(), 2);
    b.remove_prekey(100).await.unwrap();
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 9, "the maximum follows deletes");

    // Signed pre-keys.
    b.store_signed_prekey(2, b"spk-2").await.unwrap();
    b.store_signed_prekey(1, b"spk-1").await.unwrap();
    assert_eq!(b.load_signed_prekey(2).await.unwrap().as_deref(), Some(&b"spk-2"[..]));
    b.store_signed_prekey(2, b"spk-2b").await.unwrap();
    assert_eq!(
        b.load_all_signed_prekeys().await.unwrap(),
        vec![(1, b"spk-1".to_vec()), (2, b"spk-2b".to_vec())],
        "all, by id, overwritten"
    );
    b.remove_signed_prekey(1).await.unwrap();
    assert_eq!(b.load_signed_prekey(1).await.unwrap(), None);

    // Sender keys.
    let sk = "120363000000000001@g.us::15550100002.0:1";
    b.put_sender_key(sk, b"sk-1").await.unwrap();
    assert_eq!(b.get_sender_key(sk).await.unwrap().as_deref(), Some(&b"sk-1"[..]));
    b.put_sender_keys_batch(&[(Arc::from(sk), Bytes::from_static(b"sk-2"))]).await.unwrap();
    assert_eq!(b.get_sender_key(sk).await.unwrap().as_deref(), Some(&b"sk-2"[..]));
    b.delete_sender_key(sk).await.unwrap();
    assert_eq!(b.get_sender_key(sk).await.unwrap(), None);
}

#[tokio::test]
async fn app_state_records_round_trip() {
    let f = fixture().await;
    let b = &f.backend;

    assert!(b.get_sync_key(b"k1").await.unwrap().is_none());
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), None);
    let key = AppStateSyncKey { key_data: vec![7; 32], fingerprint: vec![1, 2, 3], timestamp: 42 };
    b.set_sync_key(b"k1", key.clone()).await.unwrap();
    b.set_sync_key(b"k2", AppStateSyncKey { timestamp: 43, ..key.clone() }).await.unwrap();
    let got = b.get_sync_key(b"k1").await.unwrap().expect("sync key");
    assert_eq!((got.key_data, got.fingerprint, got.timestamp), (key.key_data.clone(), key.fingerprint.clone(), 42));
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), Some(b"k2".to_vec()), "latest follows the last set");
    b.set_sync_key(b"k1", AppStateSyncKey { timestamp: 44, ..key }).await.unwrap();
    assert_eq!(b.get_sync_key(b"k1").await.unwrap().expect("sync key").timestamp, 44, "overwrite");
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), Some(b"k1".to_vec()));

    assert_eq!(b.get_version("regular").await.unwrap().version, 0, "absent version is the default");
    let mut state = HashState { version: 7, ..HashState::default() };
    state.hash[0] = 9;
    state.hash[127] = 8;
    state.index_value_map.insert("idx".into(), vec![1, 2]);
    b.set_version("regular", state.clone()).await.unwrap();
    let got = b.get_version("regular").await.unwrap();
    assert_eq!((got.version, got.hash, got.index_value_map.clone()), (7, state.hash, state.index_value_map.clone()));
    b.set_version("regular", HashState { version: 8, ..state }).await.unwrap();
    assert_eq!(b.get_version("regular").await.unwrap().version, 8, "overwrite");
    assert_eq!(b.get_version("critical_block").await.unwrap().version, 0, "per collection");

    let m = |i: u8, v: u8| AppStateMutationMAC { index_mac: vec![i; 32], value_mac: vec![v; 32] };
    b.put_mutation_macs("regular", 1, &[m(1, 10), m(2, 20)]).await.unwrap();
    b.put_mutation_macs("regular_low", 1, &[m(1, 99)]).await.unwrap();
    assert_eq!(b.get_mutation_mac("regular", &[1; 32]).await.unwrap(), Some(vec![10; 32]));
    assert_eq!(b.get_mutation_mac("regular_low", &[1; 32]).await.unwrap(), Some(vec![99; 32]), "per collection");
    b.put_mutation_macs("regular", 2, &[m(1, 11)]).await.unwrap();
    let many = b.get_mutation_macs("regular", &[[1; 32], [2; 32], [3; 32]]).await.unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[&[1; 32]], vec![11; 32], "overwrite");
    assert_eq!(many[&[2; 32]], vec![20; 32]);
    b.delete_mutation_macs("regular", &[vec![1; 32]]).await.unwrap();
    assert_eq!(b.get_mutation_mac("regular", &[1; 32]).await.unwrap(), None);
    assert_eq!(b.get_mutation_mac("regular_low", &[1; 32]).await.unwrap(), Some(vec![99; 32]), "other collection kept");
    b.clear_mutation_macs("regular").await.unwrap();
    assert_eq!(b.get_mutation_mac("regular", &[2; 32]).await.unwrap(), None);
    assert_eq!(b.get_mutation_mac("regular_low", &[1; 32]).await.unwrap(), Some(vec![99; 32]));
}

#[tokio::test]
async fn protocol_records_round_trip() {
    let f = fixture().await;
    let b = &f.backend;
    let g1 = "120363000000000001@g.us";
    let g2 = "120363000000000002@g.us";

    // Sender-key devices.
    b.set_sender_key_status(g1, &[("a:1@s.whatsapp.net", true), ("b:2@s.whatsapp.net", false)]).await.unwrap();
    b.set_sender_key_status(g2, &[("a:1@s.whatsapp.net", true)]).await.unwrap();
    let mut got = b.get_sender_key_devices(g1).await.unwrap();
    got.sort();
    assert_eq!(got, vec![("a:1@s.whatsapp.net".into(), true), ("b:2@s.whatsapp.net".into(), false)]);
    b.set_sender_key_status(g1, &[("b:2@s.whatsapp.net", true)]).await.unwrap();
    assert!(b.get_sender_key_devices(g1).await.unwrap().contains(&("b:2@s.whatsapp.net".into(), true)), "overwrite");
    b.delete_sender_key_device_rows(&["a:1@s.whatsapp.net"]).await.unwrap();
    assert_eq!(b.get_sender_key_devices(g1).await.unwrap(), vec![("b:2@s.whatsapp.net".into(), true)]);
    assert!(b.get_sender_key_devices(g2).await.unwrap().is_empty(), "rows deleted across groups");
    b.set_sender_key_status(g2, &[("c:3@s.whatsapp.net", true)]).await.unwrap();
    b.clear_sender_key_devices(g1).await.unwrap();
    assert!(b.get_sender_key_devices(g1).await.unwrap().is_empty());
    assert_eq!(b.get_sender_key_devices(g2).await.unwrap().len(), 1, "one group cleared");
    b.clear_all_sender_key_devices().await.unwrap();
    assert!(b.get_sender_key_devices(g2).await.unwrap().is_empty());

    // LID / phone mappings and their reverse index.
    let entry = |lid: &str, pn: &str, t: i64| LidPnMappingEntry {
        lid: lid.into(),
        phone_number: pn.into(),
        created_at: t,
        updated_at: t,
        learning_source: "usync".into(),
    };
    b.put_lid_mapping(&entry("100", "15550000001", 1)).await.unwrap();
    assert_eq!(b.get_lid_mapping("100").await.unwrap().expect("lid").phone_number, "15550000001");
    assert_eq!(b.get_pn_mapping("15550000001").await.unwrap().expect("pn").lid, "100");
    b.put_lid_mapping(&entry("100", "15550000002", 2)).await.unwrap();
    assert!(b.get_pn_mapping("15550000001").await.unwrap().is_none(), "the old phone's index is dropped");
    assert_eq!(b.get_pn_mapping("15550000002").await.unwrap().expect("pn").updated_at, 2);
    b.put_lid_mappings(&[entry("200", "15550000003", 3), entry("300", "15550000004", 4)]).await.unwrap();
    let mut all: Vec<String> = b.get_all_lid_mappings().await.unwrap().into_iter().map(|e| e.lid).collect();
    all.sort();
    assert_eq!(all, vec!["100", "200", "300"]);

    // Base keys.
    b.save_base_key("addr", "m1", b"base-1").await.unwrap();
    assert!(b.has_same_base_key("addr", "m1", b"base-1").await.unwrap());
    assert!(!b.has_same_base_key("addr", "m1", b"base-2").await.unwrap());
    assert!(!b.has_same_base_key("addr", "m2", b"base-1").await.unwrap());
    b.save_base_key("addr", "m1", b"base-2").await.unwrap();
    assert!(b.has_same_base_key("addr", "m1", b"base-2").await.unwrap(), "overwrite");
    b.delete_base_key("addr", "m1").await.unwrap();
    assert!(!b.has_same_base_key("addr", "m1", b"base-2").await.unwrap());

    // Device lists.
    let list = |user: &str, n: u32| DeviceListRecord {
        user: user.into(),
        devices: (0..n).map(|d| DeviceInfo::new(d, Some(d)).with_hosting(d == 1)).collect(),
        timestamp: 5,
        phash: Some("2:abc".into()),
        raw_id: Some(9),
    };
    b.update_device_list(list("15550000001", 2)).await.unwrap();
    let got = b.get_devices("15550000001").await.unwrap().expect("devices");
    assert_eq!(
        (got.devices.len(), got.devices[1].is_hosted, got.phash.as_deref(), got.raw_id),
        (2, true, Some("2:abc"), Some(9))
    );
    b.update_device_lists(vec![list("15550000001", 3), list("15550000002", 1)]).await.unwrap();
    assert_eq!(b.get_devices("15550000001").await.unwrap().expect("devices").devices.len(), 3, "overwrite");
    b.delete_devices("15550000001").await.unwrap();
    assert!(b.get_devices("15550000001").await.unwrap().is_none());
    assert!(b.get_devices("15550000002").await.unwrap().is_some());

    // Group metadata.
    b.put_group_metadata(g1, b"meta-1").await.unwrap();
    assert_eq!(b.get_group_metadata(g1).await.unwrap(), Some(b"meta-1".to_vec()));
    b.put_group_metadata(g1, b"meta-2").await.unwrap();
    assert_eq!(b.get_group_metadata(g1).await.unwrap(), Some(b"meta-2".to_vec()));
    b.delete_group_metadata(g1).await.unwrap();
    assert_eq!(b.get_group_metadata(g1).await.unwrap(), None);
}

#[tokio::test]
async fn tc_tokens_follow_the_merge_rules() {
    let f = fixture().await;
    let b = &f.backend;
    let jid = "100@lid";
    let tok = |t: &[u8], ts: i64, s: Option<i64>| TcTokenEntry {
        token: t.to_vec(),
        token_timestamp: ts,
        sender_timestamp: s,
    };

    b.put_tc_token(jid, &tok(b"t1", 10, None)).await.unwrap();
    let got = b.get_tc_token(jid).await.unwrap().expect("token");
    assert_eq!((got.token, got.token_timestamp, got.sender_timestamp), (b"t1".to_vec(), 10, None));
    b.put_tc_token(jid, &tok(b"t2", 11, Some(3))).await.unwrap();
    assert_eq!(b.get_tc_token(jid).await.unwrap().expect("token").token, b"t2", "overwrite");

    // The sender bucket only moves forward and keeps the token bytes.
    b.touch_tc_token_sender_timestamp(jid, 20).await.unwrap();
    b.touch_tc_token_sender_timestamp(jid, 15).await.unwrap();
    let got = b.get_tc_token(jid).await.unwrap().expect("token");
    assert_eq!((got.token, got.sender_timestamp), (b"t2".to_vec(), Some(20)));
    // A placeholder for an unknown contact.
    b.touch_tc_token_sender_timestamp("200@lid", 30).await.unwrap();
    let got = b.get_tc_token("200@lid").await.unwrap().expect("placeholder");
    assert_eq!((got.token.len(), got.token_timestamp, got.sender_timestamp), (0, 30, Some(30)));

    // Received tokens: newer wins, stale ones are ignored, the sender bucket is kept.
    b.store_received_tc_token(jid, b"old", 5).await.unwrap();
    assert_eq!(b.get_tc_token(jid).await.unwrap().expect("token").token, b"t2", "a stale token is ignored");
    b.store_received_tc_token(jid, b"t3", 12).await.unwrap();
    let got = b.get_tc_token(jid).await.unwrap().expect("token");
    assert_eq!((got.token, got.token_timestamp, got.sender_timestamp), (b"t3".to_vec(), 12, Some(20)));
    b.store_received_tc_token("200@lid", b"first", 1).await.unwrap();
    assert_eq!(b.get_tc_token("200@lid").await.unwrap().expect("token").token, b"first", "a placeholder never blocks");

    let mut jids = b.get_all_tc_token_jids().await.unwrap();
    jids.sort();
    assert_eq!(jids, vec!["100@lid", "200@lid"]);

    // Expiry drops a row only when both its token and its sender bucket are stale.
    b.put_tc_token("300@lid", &tok(b"", 1, None)).await.unwrap();
    b.put_tc_token("400@lid", &tok(b"x", 1, Some(100))).await.unwrap();
    let deleted = b.delete_expired_tc_tokens(12, 25).await.unwrap();
    // 100: token 12 >= 12 live. 200: token 1 stale, sender 30 live. 300: both stale. 400: sender live.
    assert_eq!(deleted, 1);
    assert!(b.get_tc_token("300@lid").await.unwrap().is_none());
    assert_eq!(b.delete_expired_tc_tokens(13, 31).await.unwrap(), 2, "100 and 200 are stale now");
    b.delete_tc_token("400@lid").await.unwrap();
    assert!(b.get_all_tc_token_jids().await.unwrap().is_empty());
}

#[tokio::test]
async fn sent_messages_and_pending_inbound_expire_and_take_once() {
    let f = fixture().await;
    let b = &f.backend;
    let now = whatsapp_rust::wacore::time::now_secs();
    let chat = "15550000001@s.whatsapp.net";

    b.store_sent_message(chat, "m1", b"payload-1").await.unwrap();
    b.store_sent_message(chat, "m1", b"payload-1b").await.unwrap();
    b.store_sent_message(chat, "m2", b"payload-2").await.unwrap();
    b.store_sent_message("other@s.whatsapp.net", "m1", b"other").await.unwrap();
    assert_eq!(b.take_sent_message(chat, "m1").await.unwrap(), Some(b"payload-1b".to_vec()), "overwrite, then take");
    assert_eq!(b.take_sent_message(chat, "m1").await.unwrap(), None, "a take consumes");
    assert_eq!(b.delete_expired_sent_messages(now - 60).await.unwrap(), 0, "fresh rows are kept");
    assert_eq!(b.delete_expired_sent_messages(now + 60).await.unwrap(), 2, "older than the cutoff go");
    assert_eq!(b.take_sent_message(chat, "m2").await.unwrap(), None);

    b.store_pending_inbound(chat, "s1", "i1", b"in-1").await.unwrap();
    b.store_pending_inbound_batch(&[
        PendingInboundRow { chat, sender: "s1", id: "i2", message: b"in-2" },
        PendingInboundRow { chat, sender: "s2", id: "i1", message: b"in-3" },
    ])
    .await
    .unwrap();
    assert_eq!(b.get_pending_inbound(chat, "s1", "i1").await.unwrap(), Some(b"in-1".to_vec()));
    assert_eq!(b.get_pending_inbound(chat, "s2", "i1").await.unwrap(), Some(b"in-3".to_vec()), "keyed by sender too");
    b.store_pending_inbound(chat, "s1", "i1", b"in-1b").await.unwrap();
    assert_eq!(b.get_pending_inbound(chat, "s1", "i1").await.unwrap(), Some(b"in-1b".to_vec()), "overwrite");
    b.delete_pending_inbound(chat, "s1", "i1").await.unwrap();
    assert_eq!(b.get_pending_inbound(chat, "s1", "i1").await.unwrap(), None);
    b.delete_pending_inbound_batch(&[PendingInboundKey { chat, sender: "s1", id: "i2" }]).await.unwrap();
    assert_eq!(b.get_pending_inbound(chat, "s1", "i2").await.unwrap(), None);
    assert_eq!(b.delete_expired_pending_inbound(now - 60).await.unwrap(), 0);
    assert_eq!(b.delete_expired_pending_inbound(now + 60).await.unwrap(), 1);
    assert_eq!(b.get_pending_inbound(chat, "s2", "i1").await.unwrap(), None);
}

#[tokio::test]
async fn msg_secrets_merge_and_expire() {
    let f = fixture().await;
    let b = &f.backend;
    let chat: Jid = "15550000001@s.whatsapp.net".parse().unwrap();
    let me: Jid = "15550000009:3@s.whatsapp.net".parse().unwrap();
    let entry = |id: &str, secret: u8, expires_at: i64, ts: i64| {
        MsgSecretEntry::new(&chat, &me, id, [secret; 32], expires_at, ts)
    };
    let (c, s) = ("15550000001@s.whatsapp.net", "15550000009@s.whatsapp.net");

    assert_eq!(b.get_msg_secret(c, s, "m1").await.unwrap(), None);
    b.put_msg_secret(c, s, "m0", &[5; 32]).await.unwrap();
    assert_eq!(b.get_msg_secret_with_ts(c, s, "m0").await.unwrap(), Some((vec![5; 32], 0)));
    assert_eq!(b.put_msg_secrets(vec![entry("m1", 1, 100, 50), entry("m2", 2, 200, 0)]).await.unwrap(), 2);
    assert_eq!(b.get_msg_secret_with_ts(c, s, "m1").await.unwrap(), Some((vec![1; 32], 50)));

    // A re-put never shortens a window and a 0 never clobbers a known parent time.
    b.put_msg_secrets(vec![entry("m1", 3, 90, 0), entry("m2", 4, 300, 70)]).await.unwrap();
    assert_eq!(b.get_msg_secret_with_ts(c, s, "m1").await.unwrap(), Some((vec![3; 32], 50)), "secret replaced");
    assert_eq!(b.get_msg_secret_with_ts(c, s, "m2").await.unwrap(), Some((vec![4; 32], 70)));
    // Repeats within one batch merge too.
    b.put_msg_secrets(vec![entry("m3", 1, 400, 0), entry("m3", 2, 350, 10)]).await.unwrap();
    assert_eq!(b.get_msg_secret_with_ts(c, s, "m3").await.unwrap(), Some((vec![2; 32], 10)));

    // m1 expires at 100, m2 at 300, m3 at 400; m0 never. At or before the cutoff goes.
    assert_eq!(b.delete_expired_msg_secrets(99).await.unwrap(), 0);
    assert_eq!(b.delete_expired_msg_secrets(100).await.unwrap(), 1, "an expiry equal to the cutoff goes");
    assert_eq!(b.get_msg_secret(c, s, "m1").await.unwrap(), None);
    assert_eq!(b.delete_expired_msg_secrets(i64::MAX - 1).await.unwrap(), 2);
    assert_eq!(b.get_msg_secret(c, s, "m0").await.unwrap(), Some(vec![5; 32]), "expires_at 0 never expires");
}

/// The plaintext forms a value could leak in.
fn leaks(haystack: &[u8], secret: &[u8]) -> bool {
    use base64::Engine as _;
    let forms = [
        secret.to_vec(),
        base64::engine::general_purpose::STANDARD.encode(secret).into_bytes(),
        super::lower_hex(secret).into_bytes(),
    ];
    forms.iter().any(|f| haystack.windows(f.len()).any(|w| w == f.as_slice()))
}

#[tokio::test]
async fn values_are_sealed_at_rest() {
    let f = fixture().await;
    let b = &f.backend;
    let device = paired_device();
    b.save(&device).await.unwrap();
    let identity = [0xA7_u8; 32];
    b.put_identity("15550100002.0:1", identity).await.unwrap();
    let session = b"ratchet-chain-key-material-0123456789".to_vec();
    b.put_session("15550100002.0:1", &session).await.unwrap();
    b.store_prekey(1, b"one-time-prekey-private-material", false).await.unwrap();

    let private = device.identity_key.private_key.serialize();
    let noise = device.noise_key.private_key.serialize();
    let all = ezw_core::ports::SessionStore::get_session_state(
        &*f.store,
        &f.org,
        &f.line,
        StateSelector { kind: kind::DEVICE, scope: None, keys: None },
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 1);
    let mut records = all;
    for k in [kind::IDENTITY, kind::SESSION, kind::PREKEY] {
        records.extend(
            f.store
                .get_session_state(&f.org, &f.line, StateSelector { kind: k, scope: None, keys: None })
                .await
                .unwrap(),
        );
    }
    assert_eq!(records.len(), 4);
    for r in &records {
        assert!(r.value.starts_with(b"enc:v1:"), "{} is sealed", r.kind);
        for secret in
            [&identity[..], &session, b"one-time-prekey-private-material", &private[..], &noise[..], b"Billing"]
        {
            assert!(!leaks(&r.value, secret), "{} leaks plaintext", r.kind);
        }
    }

    // Another server key cannot read them: an error, not garbage and not a panic.
    let other: Arc<dyn SessionStore> = f.store.clone();
    let stranger = EzwBackend::new(other, cipher(b"another master key"), f.org.clone(), f.line.clone());
    assert!(stranger.load().await.is_err());
    assert!(stranger.get_session("15550100002.0:1").await.is_err());
}

#[tokio::test]
async fn another_line_sees_nothing_and_moved_values_do_not_open() {
    let f = fixture().await;
    let other_line = add_line(&*f.store, &f.org, "+15550100002").await;
    let (other_org, foreign_line) = tenant(&*f.store, "+15550100003").await;
    let a = &f.backend;
    let b = backend(&f.store, &f.org, &other_line);
    let c = backend(&f.store, &other_org, &foreign_line);

    a.save(&paired_device()).await.unwrap();
    a.put_session("addr", b"s").await.unwrap();
    a.store_prekey(5, b"pk", false).await.unwrap();
    a.set_sync_key(b"k", AppStateSyncKey::default()).await.unwrap();
    for other in [&b, &c] {
        assert!(!other.exists().await.unwrap());
        assert_eq!(other.get_session("addr").await.unwrap(), None);
        assert_eq!(other.get_max_prekey_id().await.unwrap(), 0);
        assert_eq!(other.get_latest_sync_key_id().await.unwrap(), None);
    }
    // The same line id under another organization is not the line either.
    let wrong_org = backend(&f.store, &other_org, &f.line);
    assert!(!wrong_org.exists().await.unwrap());

    // Clearing one line leaves the other alone.
    b.put_session("addr", b"b's").await.unwrap();
    a.clear().await.unwrap();
    assert_eq!(b.get_session("addr").await.unwrap().as_deref(), Some(&b"b's"[..]));

    // A sealed value copied under another address does not open.
    a.put_session("victim", b"secret session").await.unwrap();
    let mut stolen = f
        .store
        .get_session_state(
            &f.org,
            &f.line,
            StateSelector { kind: kind::SESSION, scope: None, keys: Some(&["victim".into()]) },
        )
        .await
        .unwrap();
    let mut moved = stolen.pop().expect("record");
    moved.key = "attacker".into();
    f.store.put_session_state(&f.org, &f.line, std::slice::from_ref(&moved)).await.unwrap();
    assert!(a.get_session("attacker").await.is_err(), "a value moved to another key is rejected");
    let copied = ezw_core::ports::SessionStateRecord { key: "victim".into(), ..moved };
    f.store.put_session_state(&f.org, &other_line, &[copied]).await.unwrap();
    assert!(b.get_session("victim").await.is_err(), "a value moved to another line is rejected");
}

#[tokio::test]
async fn state_is_restored_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = paired_device();
    let (org, line) = {
        let store = open(dir.path());
        let (org, line) = tenant(&*store, "+15550100001").await;
        let b = backend(&store, &org, &line);
        b.save(&device).await.unwrap();
        b.put_identity("peer.0:1", [9; 32]).await.unwrap();
        b.put_session("peer.0:1", b"session").await.unwrap();
        b.store_prekeys_batch(&[(1, Bytes::from_static(b"pk1")), (2, Bytes::from_static(b"pk2"))], true).await.unwrap();
        b.store_signed_prekey(1, b"spk").await.unwrap();
        b.set_sync_key(b"key-id", AppStateSyncKey { key_data: vec![1; 32], fingerprint: vec![], timestamp: 1 })
            .await
            .unwrap();
        b.set_version("regular", HashState { version: 3, ..HashState::default() }).await.unwrap();
        b.put_lid_mapping(&LidPnMappingEntry {
            lid: "100".into(),
            phone_number: "15550000001".into(),
            created_at: 1,
            updated_at: 1,
            learning_source: "usync".into(),
        })
        .await
        .unwrap();
        (org, line)
        // The store, its connections and the backend are dropped here.
    };

    let store = open(dir.path());
    let b = backend(&store, &org, &line);
    let loaded = b.load().await.unwrap().expect("the device survives a restart");
    assert_eq!(device_json(&loaded), device_json(&device));
    assert_eq!(loaded.pn, device.pn);
    assert_eq!(b.load_identity("peer.0:1").await.unwrap(), Some([9; 32]));
    assert_eq!(b.get_session("peer.0:1").await.unwrap().as_deref(), Some(&b"session"[..]));
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 2);
    assert_eq!(b.load_prekey(1).await.unwrap().as_deref(), Some(&b"pk1"[..]));
    assert_eq!(b.load_signed_prekey(1).await.unwrap(), Some(b"spk".to_vec()));
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), Some(b"key-id".to_vec()));
    assert_eq!(b.get_version("regular").await.unwrap().version, 3);
    assert_eq!(b.get_pn_mapping("15550000001").await.unwrap().expect("mapping").lid, "100");
}
