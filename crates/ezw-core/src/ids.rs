//! Identifier newtypes.
//!
//! Ids are prefixed, time-ordered strings (`line_01J...`): 48 bits of milliseconds and 80 random
//! bits in Crockford base32, so they sort by creation time and never collide in practice.

use std::fmt;

use rand::RngCore;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Generates the 26-character body of a new id (ULID layout) for the given unix milliseconds.
#[must_use]
pub fn new_id_body(unix_ms: i64) -> String {
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let mut value: u128 = (u128::from(unix_ms.max(0) as u64) & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        *slot = CROCKFORD[((value >> shift) & 0x1F) as usize];
    }
    out.iter().map(|&c| c as char).collect()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this type starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id for an object created at `unix_ms`.
            #[must_use]
            pub fn generate(unix_ms: i64) -> Self {
                Self(format!("{}_{}", $prefix, new_id_body(unix_ms)))
            }

            /// Wraps an id read from storage or a request, without checking its shape.
            #[must_use]
            pub fn from_raw(raw: impl Into<String>) -> Self {
                Self(raw.into())
            }

            /// Parses an id received from a caller: it must carry this type's prefix.
            ///
            /// # Errors
            /// `None` when the prefix or the characters are wrong (callers answer 404 or 400).
            #[must_use]
            pub fn parse(raw: &str) -> Option<Self> {
                let body = raw.strip_prefix(concat!($prefix, "_"))?;
                (!body.is_empty() && body.len() <= 64 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then(|| Self(raw.to_owned()))
            }

            /// The id as a string.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(/// An organization (tenant).
    OrganizationId, "org");
id_type!(/// A user account (may belong to several organizations).
    UserId, "usr");
id_type!(/// A WhatsApp number ("line") of an organization.
    LineId, "line");
id_type!(/// A line API token record (the token itself is never stored).
    LineTokenId, "ltok");
id_type!(/// A customer contact.
    ContactId, "ct");
id_type!(/// A conversation between a line and a contact.
    ConversationId, "conv");
id_type!(/// A message (inbound or outbound).
    MessageId, "msg");
id_type!(/// A login session (refresh-token chain).
    SessionId, "ses");
id_type!(/// An internal note on a conversation.
    NoteId, "note");
id_type!(/// An outgoing webhook subscription.
    WebhookId, "wh");
id_type!(/// A media attachment in the blob store.
    AttachmentId, "att");
id_type!(/// An audit log event.
    AuditEventId, "aud");
id_type!(/// A campaign.
    CampaignId, "cmp");
id_type!(/// One webhook's delivery of one event (the same across retries: receivers deduplicate on it).
    DeliveryId, "dlv");
id_type!(/// An event that webhooks deliver (shared by the deliveries of every subscribed webhook).
    EventId, "evt");
id_type!(/// One request to pair a QR line (a QR code or a phone-number code, with its rotations).
    PairingId, "pair");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_sortable_and_parse_back() {
        let a = LineId::generate(1_700_000_000_000);
        let b = LineId::generate(1_700_000_000_001);
        assert!(a.as_str().starts_with("line_"));
        assert_eq!(a.as_str().len(), "line_".len() + 26);
        assert!(a < b);
        assert_eq!(LineId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(LineId::parse("conv_01ABC"), None);
        assert_eq!(LineId::parse("line_"), None);
        assert_eq!(LineId::parse("line_ab'c"), None);
    }
}
