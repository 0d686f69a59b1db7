//! The live stream: hints filtered to what the caller may see, with heartbeats, session
//! re-checks and `Last-Event-ID` resume.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::ids::LineId;
use crate::ports::{LiveEvent, LiveEventId, Replay};
use crate::principal::Principal;
use crate::time::Timestamp;

use super::lines::visible_line_ids;
use super::runtime::Inner;

/// What a live stream yields next.
#[derive(Debug, Clone)]
pub enum LiveItem {
    /// A hint the caller may see.
    Event(Arc<LiveEvent>),
    /// Hints were lost (the resume point is too old or unknown, or the client fell behind):
    /// refetch everything, then carry on from here.
    Reset {
        /// `resume_window_passed`, `unknown_event_id` or `lagged`.
        reason: &'static str,
    },
    /// Nothing happened for a heartbeat interval; the session was re-checked and is still good.
    Heartbeat,
}

/// Live streams.
#[derive(Clone, Copy)]
pub struct LiveService<'a> {
    pub(crate) inner: &'a Inner,
}

impl LiveService<'_> {
    /// Opens a stream of the hints `principal` may see: its organization only, lines it may
    /// view only, `access.changed` only about itself (owners and admins see all of them).
    /// With `last_event_id` (what the client last received), hints published since then come
    /// first, or a [`LiveItem::Reset`] when they are no longer kept.
    ///
    /// # Errors
    /// 403 for line tokens (the stream is a workspace feature).
    pub async fn open(&self, principal: &Principal, last_event_id: Option<&str>) -> Result<LiveStream> {
        if !matches!(principal, Principal::User(_)) {
            return Err(Error::forbidden("the live stream is for workspace users"));
        }
        let inner = self.inner.self_arc().ok_or_else(|| Error::internal("the runtime is shutting down"))?;
        // Subscribe before replaying, so nothing published in between is missed; the sequence
        // numbers drop what both paths deliver.
        let rx = inner.live.subscribe();
        let mut stream = LiveStream {
            visible: None,
            principal: principal.clone(),
            rx,
            backlog: VecDeque::new(),
            seen_up_to: None,
            pending_reset: None,
            next_heartbeat: inner.clock.now().plus(inner.config.live_heartbeat),
            inner,
        };
        stream.refresh_visibility().await?;
        if let Some(raw) = last_event_id.map(str::trim).filter(|s| !s.is_empty()) {
            match LiveEventId::parse(raw) {
                None => stream.pending_reset = Some("unknown_event_id"),
                Some(after) => match stream.inner.live.replay_since(after) {
                    Replay::Gap => stream.pending_reset = Some("resume_window_passed"),
                    Replay::Events(events) => {
                        stream.seen_up_to = Some(events.last().map_or(after, |e| e.id));
                        stream.backlog = events.into();
                    }
                },
            }
        }
        Ok(stream)
    }
}

/// An open live stream; see [`LiveService::open`].
pub struct LiveStream {
    inner: Arc<Inner>,
    principal: Principal,
    visible: Option<HashSet<LineId>>,
    rx: broadcast::Receiver<Arc<LiveEvent>>,
    backlog: VecDeque<Arc<LiveEvent>>,
    seen_up_to: Option<LiveEventId>,
    pending_reset: Option<&'static str>,
    next_heartbeat: Timestamp,
}

impl std::fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStream").field("principal", &self.principal).finish_non_exhaustive()
    }
}

impl LiveStream {
    /// The next item, or `None` when the stream is over: the session was revoked, the
    /// membership ended, or the runtime stopped.
    pub async fn next(&mut self) -> Option<LiveItem> {
        loop {
            if let Some(reason) = self.pending_reset.take() {
                return Some(LiveItem::Reset { reason });
            }
            if let Some(event) = self.backlog.pop_front() {
                match self.admit(event).await {
                    Admit::Yes(event) => return Some(LiveItem::Event(event)),
                    Admit::No => continue,
                    Admit::End => return None,
                }
            }
            let heartbeat = self.inner.clock.sleep_until(self.next_heartbeat);
            tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(event) => {
                        if self.seen_up_to.is_some_and(|seen| event.id.epoch == seen.epoch && event.id.seq <= seen.seq) {
                            continue;
                        }
                        match self.admit(event).await {
                            Admit::Yes(event) => return Some(LiveItem::Event(event)),
                            Admit::No => continue,
                            Admit::End => return None,
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(LiveItem::Reset { reason: "lagged" }),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = heartbeat => {
                    self.next_heartbeat = self.inner.clock.now().plus(self.inner.config.live_heartbeat);
                    if self.recheck().await.is_err() {
                        return None;
                    }
                    return Some(LiveItem::Heartbeat);
                }
            }
        }
    }

    fn user(&self) -> Option<&crate::principal::UserPrincipal> {
        match &self.principal {
            Principal::User(u) => Some(u),
            Principal::Line(_) => None,
        }
    }

    async fn admit(&mut self, event: Arc<LiveEvent>) -> Admit {
        let hint = &event.hint;
        let Some(me) = self.user() else { return Admit::End };
        if hint.organization_id != me.organization_id {
            return Admit::No;
        }
        if hint.kind == "access.changed" {
            let about_me = hint.user_id.as_ref().is_none_or(|u| *u == me.user_id);
            let manager = me.role.is_manager();
            if about_me && self.recheck().await.is_err() {
                return Admit::End;
            }
            return if about_me || manager { Admit::Yes(event) } else { Admit::No };
        }
        if let Some(line) = &hint.line_id {
            if !self.sees(line) {
                // A line created after the stream opened is not in the set yet.
                if hint.kind.starts_with("line.") && self.refresh_visibility().await.is_err() {
                    return Admit::End;
                }
                if !self.sees(line) {
                    return Admit::No;
                }
            }
        }
        Admit::Yes(event)
    }

    fn sees(&self, line: &LineId) -> bool {
        self.visible.as_ref().is_none_or(|lines| lines.contains(line))
    }

    async fn refresh_visibility(&mut self) -> Result<()> {
        self.visible = visible_line_ids(&self.inner, &self.principal).await?.map(|lines| lines.into_iter().collect());
        Ok(())
    }

    /// Re-reads the session and membership (the role may have changed, the member may have been
    /// disabled, the session revoked), then the visible lines.
    async fn recheck(&mut self) -> Result<()> {
        let Some(me) = self.user().cloned() else { return Err(Error::forbidden("not a workspace user")) };
        if let Some(session) = &me.session_id {
            let live = self.inner.store.get_session(session).await?.is_some_and(|s| s.revoked_at.is_none());
            if !live {
                return Err(Error::unauthenticated("the session has ended"));
            }
        }
        let membership = self.inner.store.get_membership(&me.organization_id, &me.user_id).await?;
        match membership {
            Some(m) if m.status == crate::model::MembershipStatus::Active => {
                if let Principal::User(u) = &mut self.principal {
                    u.role = m.role;
                }
            }
            _ => return Err(Error::unauthenticated("not an active member of this organization")),
        }
        self.refresh_visibility().await
    }
}

enum Admit {
    Yes(Arc<LiveEvent>),
    No,
    End,
}
