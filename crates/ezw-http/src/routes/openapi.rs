//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the whole HTTP API.
