//! E.164 phone numbers.

use std::fmt;

use crate::error::{Error, Result};

/// A phone number in E.164 form: `+` and 8 to 15 digits, the first not zero.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number given in international form. Spaces, dashes, dots and parentheses are
    /// ignored; a leading `00` is read as `+`; digits without a `+` are read as international.
    ///
    /// # Errors
    /// `invalid_phone_number` (400) when the result is not E.164.
    pub fn parse(input: &str) -> Result<Self> {
        let trimmed = input.trim();
        let mut digits = String::with_capacity(16);
        for (i, c) in trimmed.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(invalid(input)),
            }
        }
        if !trimmed.starts_with('+') {
            if let Some(rest) = digits.strip_prefix("00") {
                digits = rest.to_owned();
            }
        }
        let valid = (8..=15).contains(&digits.len()) && !digits.starts_with('0');
        if valid {
            Ok(Self(format!("+{digits}")))
        } else {
            Err(invalid(input))
        }
    }

    /// Wraps a number read from storage.
    #[must_use]
    pub fn from_raw(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// `+` and digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+` (the WhatsApp id form).
    #[must_use]
    pub fn digits(&self) -> &str {
        self.0.trim_start_matches('+')
    }
}

fn invalid(input: &str) -> Error {
    let shown: String = input.chars().take(32).collect();
    Error::invalid("invalid_phone_number", format!("'{shown}' is not an international (E.164) phone number"))
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::PhoneNumber;

    #[test]
    fn parses_international_forms() {
        for ok in ["+972501234567", "972501234567", "+1 (415) 555-0100", "0044 20 7946 0958"] {
            assert!(PhoneNumber::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(PhoneNumber::parse("0044 20 7946 0958").unwrap().as_str(), "+442079460958");
        assert_eq!(PhoneNumber::parse("+1 (415) 555-0100").unwrap().digits(), "14155550100");
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "+", "12345", "+0501234567", "+97250123456789012", "abc", "+9725O1234567", "+1+2345678901"] {
            let err = PhoneNumber::parse(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_phone_number", "{bad}");
        }
    }
}
