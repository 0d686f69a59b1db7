//! `GET /api/live/stream`: Server-Sent Events hints.
