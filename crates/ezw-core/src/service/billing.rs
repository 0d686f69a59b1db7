//! Billing: status, gates, recovery checkout through the billing gateway port.
