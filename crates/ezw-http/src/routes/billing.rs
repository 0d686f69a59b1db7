//! `/api/billing/status`, `/api/billing/recovery/checkout`.
