//! Fixtures for provider and storage tests (feature `test-util`): a connected line and an
//! outbound message with every field filled, for tests to override what they care about.

use crate::ids::{ConversationId, LineId, MessageId, OrganizationId};
use crate::model::{
    Direction, LifecycleState, Line, Message, MessageContent, MessageKind, MessageStatus, ProviderKind,
    StatusTimestamps,
};
use crate::phone::PhoneNumber;
use crate::ports::OutboundMessage;
use crate::time::Timestamp;

/// A connected `kind` line (`line_test` of `org_test`, number `+15550783881`) with `config`.
#[must_use]
pub fn line(kind: ProviderKind, config: serde_json::Value) -> Line {
    Line {
        id: LineId::from_raw("line_test"),
        organization_id: OrganizationId::from_raw("org_test"),
        display_name: "Support".into(),
        phone_number: PhoneNumber::from_raw("+15550783881"),
        provider_kind: kind,
        provider_config: config,
        lifecycle_state: LifecycleState::Connected,
        state_reason: None,
        default_assignee_id: None,
        pacing: None,
        created_at: Timestamp::from_unix_ms(0),
        updated_at: Timestamp::from_unix_ms(0),
    }
}

/// A queued outbound message (`msg_test` on `line_test`) to `to`, first attempt.
#[must_use]
pub fn outbound(kind: MessageKind, content: MessageContent, to: PhoneNumber) -> OutboundMessage {
    OutboundMessage {
        message: Message {
            id: MessageId::from_raw("msg_test"),
            organization_id: OrganizationId::from_raw("org_test"),
            line_id: LineId::from_raw("line_test"),
            conversation_id: ConversationId::from_raw("conv_test"),
            direction: Direction::Outbound,
            kind,
            content,
            status: MessageStatus::Queued,
            status_timestamps: StatusTimestamps::default(),
            provider_message_id: None,
            error: None,
            attempts: 0,
            sent_by_user_id: None,
            idempotency_key: None,
            created_at: Timestamp::from_unix_ms(0),
        },
        to,
        attempt: 1,
    }
}
