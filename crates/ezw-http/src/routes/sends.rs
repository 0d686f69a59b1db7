//! `POST /api/lines/{lineId}/send`: workspace sends, JSON or multipart with one image.
