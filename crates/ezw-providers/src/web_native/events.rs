//! What the `whatsapp-rust` client reports, as EZW events: session signals, inbound messages
//! and delivery statuses. The mapping functions are pure; [`Bridge`] applies them to a running
//! client's events and pushes the results into the runtime's [`EventSink`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ezw_core::crypto::SecretCipher;
use ezw_core::ids::{LineId, OrganizationId};
use ezw_core::model::{MediaKind, MediaRef, MessageContent, MessageKind, MessageStatus};
use ezw_core::ports::{EventSink, NewInbound, ProviderEvent, SessionSignal, StatusUpdate};
use ezw_core::{PhoneNumber, Timestamp};
use whatsapp_rust::prelude::{wa, Event, EventHandler, MessageExt};
use whatsapp_rust::types::events::{ConnectFailureReason, Receipt};
use whatsapp_rust::types::message::MessageInfo;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::{Jid, Server};

use super::media::MediaHandle;

/// A phone number as a WhatsApp user JID (`15550100001@s.whatsapp.net`).
#[must_use]
pub fn phone_to_jid(phone: &PhoneNumber) -> Jid {
    Jid::pn(phone.digits())
}

/// The phone number of a phone-number JID (device and agent dropped); `None` for LIDs, groups
/// and other servers.
#[must_use]
pub fn jid_to_phone(jid: &Jid) -> Option<PhoneNumber> {
    if jid.server != Server::Pn || jid.user.is_empty() {
        return None;
    }
    PhoneNumber::parse(&format!("+{}", jid.user)).ok()
}

/// The WhatsApp account a session runs as (`15550100001`), from its phone-number JID.
#[must_use]
pub fn account_of(jid: &Jid) -> Option<String> {
    jid_to_phone(jid).map(|p| p.digits().to_owned())
}

/// The session signal a client event means, if any. `account` is the account the session runs
/// as, when known (reported with [`SessionSignal::Connected`]).
#[must_use]
pub fn session_signal(event: &Event, account: Option<&str>) -> Option<SessionSignal> {
    Some(match event {
        Event::PairingQrCode(qr) => SessionSignal::Qr { code: qr.code.clone(), ttl: qr.timeout },
        Event::PairingCode(pc) => SessionSignal::PhoneCode { code: pc.code.clone(), ttl: pc.timeout },
        Event::PairingQrCodesExhausted(_) => SessionSignal::QrExhausted,
        Event::Connected(_) => SessionSignal::Connected { account: account.map(str::to_owned) },
        Event::Disconnected(d) => SessionSignal::Disconnected { reason: d.reason.to_string() },
        Event::StreamReplaced(_) => {
            SessionSignal::Disconnected { reason: "stream_replaced: another client connected with this session".into() }
        }
        Event::ClientOutdated(_) => {
            SessionSignal::Disconnected { reason: "client_outdated: WhatsApp refused this client version".into() }
        }
        Event::LoggedOut(l) => failure_signal(l.reason, None),
        Event::ConnectFailure(f) => match f.reason {
            // A server-side hiccup: the client reconnects by itself.
            r if r.should_reconnect() => return None,
            r => failure_signal(r, f.message.as_deref()),
        },
        Event::TemporaryBan(ban) => SessionSignal::Restricted {
            reason: format!(
                "temporary_ban: {:?} for {}s{}",
                ban.code,
                ban.expire.num_seconds(),
                ban.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
        },
        Event::StreamError(e) if e.code == "429" => SessionSignal::RateLimited {
            reason: "stream_error 429: WhatsApp asked this session to slow down".into(),
            retry_after: None,
        },
        _ => return None,
    })
}

/// A login refusal (`<failure>` or a logout) as a signal.
fn failure_signal(reason: ConnectFailureReason, message: Option<&str>) -> SessionSignal {
    let text = |code: &str| match message {
        Some(m) => format!("{code}: {m}"),
        None => code.to_owned(),
    };
    match reason {
        // WhatsApp locked the account (a ban the phone shows).
        ConnectFailureReason::AccountLocked => SessionSignal::Banned { reason: text("account_locked") },
        ConnectFailureReason::TempBanned => SessionSignal::Restricted { reason: text("temporary_ban") },
        r if r.is_logged_out() => SessionSignal::LoggedOut { reason: text(&format!("logged_out ({r:?})")) },
        r => SessionSignal::Disconnected { reason: text(&format!("connect_failure ({r:?})")) },
    }
}

/// The EZW status a receipt reports, if it is one EZW tracks.
#[must_use]
pub fn receipt_status(kind: &ReceiptType) -> Option<MessageStatus> {
    match kind {
        ReceiptType::Delivered => Some(MessageStatus::Delivered),
        ReceiptType::Sent => Some(MessageStatus::Sent),
        ReceiptType::Read | ReceiptType::Played => Some(MessageStatus::Read),
        _ => None,
    }
}

/// The status updates a receipt carries for our outbound messages (receipts from our own other
/// devices and from groups are not about EZW's sends).
#[must_use]
pub(crate) fn receipt_statuses(line: &LineId, receipt: &Receipt) -> Vec<StatusUpdate> {
    if receipt.source.is_from_me || receipt.source.is_group {
        return Vec::new();
    }
    let Some(status) = receipt_status(&receipt.r#type) else { return Vec::new() };
    let at = Timestamp::from_unix_ms(receipt.timestamp.timestamp_millis());
    receipt
        .message_ids
        .iter()
        .map(|id| StatusUpdate {
            line_id: line.clone(),
            provider_message_id: id.clone(),
            message_id: None,
            status,
            at,
            error: None,
        })
        .collect()
}

/// The customer's phone: the sender if it is a phone-number JID, else its alternate address
/// (LID-addressed chats carry the phone number there).
fn sender_phone(info: &MessageInfo) -> Option<PhoneNumber> {
    jid_to_phone(&info.source.sender).or_else(|| info.source.sender_alt.as_ref().and_then(jid_to_phone))
}

/// An inbound one-to-one message as EZW's [`NewInbound`]; `None` for our own messages, groups,
/// broadcasts, senders without a phone number and message kinds EZW does not store (protocol
/// messages, edits, polls...). Media is referenced by a sealed [`MediaHandle`] that
/// `fetch_media` downloads.
#[must_use]
pub(crate) fn inbound_message(
    org: &OrganizationId,
    line: &LineId,
    message: &wa::Message,
    info: &MessageInfo,
    cipher: &SecretCipher,
) -> Option<NewInbound> {
    if info.source.is_from_me || info.source.is_group || info.source.chat.server == Server::Broadcast {
        return None;
    }
    let from = sender_phone(info)?;
    let base = message.get_base_message();
    let (kind, content) = inbound_content(base, cipher)?;
    Some(NewInbound {
        organization_id: org.clone(),
        line_id: line.clone(),
        from,
        profile_name: Some(info.push_name.clone()).filter(|n| !n.is_empty()),
        provider_message_id: info.id.clone(),
        kind,
        content,
        received_at: Timestamp::from_unix_ms(info.timestamp.timestamp_millis()),
    })
}

fn quoted_id(context: Option<&wa::ContextInfo>) -> Option<String> {
    context.and_then(|c| c.stanza_id.clone())
}

fn inbound_content(m: &wa::Message, cipher: &SecretCipher) -> Option<(MessageKind, MessageContent)> {
    if let Some(text) = m.conversation.as_deref() {
        return Some((MessageKind::Text, MessageContent { body: Some(text.to_owned()), ..MessageContent::default() }));
    }
    if let Some(ext) = m.extended_text_message.as_option() {
        let content = MessageContent {
            body: ext.text.clone(),
            reply_to: quoted_id(ext.context_info.as_option()),
            ..MessageContent::default()
        };
        return Some((MessageKind::Text, content));
    }
    let media = |kind: MediaKind, handle: MediaHandle, caption: Option<&String>, mime: Option<&String>| MediaRef {
        kind,
        url: None,
        attachment_id: None,
        provider_media_id: Some(handle.seal(cipher)),
        sha256: None,
        caption: caption.cloned(),
        filename: None,
        mime_type: mime.cloned(),
    };
    let with_media = |kind: MessageKind, media: MediaRef, context: Option<&wa::ContextInfo>| {
        let body = media.caption.clone();
        (kind, MessageContent { body, media: Some(media), reply_to: quoted_id(context), ..MessageContent::default() })
    };
    if let Some(img) = m.image_message.as_option() {
        let handle = MediaHandle::from_parts(
            MediaKind::Image,
            img.direct_path.as_ref(),
            img.media_key.as_ref(),
            img.file_sha256.as_ref(),
            img.file_enc_sha256.as_ref(),
            img.file_length,
        )?;
        let r = media(MediaKind::Image, handle, img.caption.as_ref(), img.mimetype.as_ref());
        return Some(with_media(MessageKind::Image, r, img.context_info.as_option()));
    }
    if let Some(v) = m.video_message.as_option() {
        let handle = MediaHandle::from_parts(
            MediaKind::Video,
            v.direct_path.as_ref(),
            v.media_key.as_ref(),
            v.file_sha256.as_ref(),
            v.file_enc_sha256.as_ref(),
            v.file_length,
        )?;
        let r = media(MediaKind::Video, handle, v.caption.as_ref(), v.mimetype.as_ref());
        return Some(with_media(MessageKind::Video, r, v.context_info.as_option()));
    }
    if let Some(a) = m.audio_message.as_option() {
        let handle = MediaHandle::from_parts(
            MediaKind::Audio,
            a.direct_path.as_ref(),
            a.media_key.as_ref(),
            a.file_sha256.as_ref(),
            a.file_enc_sha256.as_ref(),
            a.file_length,
        )?;
        let r = media(MediaKind::Audio, handle, None, a.mimetype.as_ref());
        return Some(with_media(MessageKind::Audio, r, a.context_info.as_option()));
    }
    if let Some(d) = m.document_message.as_option() {
        let handle = MediaHandle::from_parts(
            MediaKind::Document,
            d.direct_path.as_ref(),
            d.media_key.as_ref(),
            d.file_sha256.as_ref(),
            d.file_enc_sha256.as_ref(),
            d.file_length,
        )?;
        let mut r = media(MediaKind::Document, handle, d.caption.as_ref(), d.mimetype.as_ref());
        r.filename = d.file_name.clone();
        return Some(with_media(MessageKind::Document, r, d.context_info.as_option()));
    }
    None
}

/// Feeds one line's client events into the runtime (registered on the client; runs inline on
/// its dispatch path, so it only maps and enqueues).
pub(crate) struct Bridge {
    pub(crate) org: OrganizationId,
    pub(crate) line: LineId,
    pub(crate) sink: EventSink,
    pub(crate) cipher: SecretCipher,
    pub(crate) clock: Arc<dyn ezw_core::Clock>,
    /// The account the session runs as, once known (stored credentials or a pairing).
    pub(crate) account: Mutex<Option<String>>,
    /// Set while EZW itself tears the client down, so that its own logout or disconnect is not
    /// reported as WhatsApp's.
    pub(crate) muted: AtomicBool,
    /// Set for phone-code pairings: the QR codes the client issues beside the code are not shown.
    pub(crate) suppress_qr: AtomicBool,
}

impl Bridge {
    fn emit_signal(&self, signal: SessionSignal) {
        tracing::debug!(line = %self.line, signal = signal.name(), "web session signal");
        self.sink.emit(ProviderEvent::Session { line_id: self.line.clone(), signal, at: self.clock.now() });
    }
}

impl EventHandler for Bridge {
    fn handle_event(&self, event: Arc<Event>) {
        if self.muted.load(Ordering::Acquire) {
            return;
        }
        match &*event {
            Event::PairSuccess(p) => {
                // Connected follows once the client re-logs in with the new credentials.
                *self.account.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = account_of(&p.id);
                tracing::info!(line = %self.line, "a phone paired with the web session");
            }
            Event::PairError(e) => tracing::warn!(line = %self.line, error = %e.error, "pairing failed on the phone"),
            Event::Messages(batch) => {
                for m in batch.messages.iter() {
                    if let Some(inbound) = inbound_message(&self.org, &self.line, &m.message, &m.info, &self.cipher) {
                        self.sink.emit(ProviderEvent::Inbound(Box::new(inbound)));
                    }
                }
            }
            Event::Receipt(r) => {
                for update in receipt_statuses(&self.line, r) {
                    self.sink.emit(ProviderEvent::Status(update));
                }
            }
            Event::PairingQrCode(_) if self.suppress_qr.load(Ordering::Acquire) => {}
            other => {
                let account = self.account.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                if let Some(signal) = session_signal(other, account.as_deref()) {
                    self.emit_signal(signal);
                }
            }
        }
    }
}
