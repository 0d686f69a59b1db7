//! Signed media URLs: `GET /api/attachments/{attachmentId}/url` and the `/media/{attachmentId}` download.
