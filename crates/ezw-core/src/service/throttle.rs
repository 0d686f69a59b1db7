//! Login and signup throttling: sliding windows of attempts per account and per client address,
//! in memory on the runtime's clock. Each node counts on its own (see `docs/operations.md`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::time::Timestamp;

/// Throttling limits (defaults: 5 failed logins per account or 20 per address in 15 minutes,
/// 10 signups per address per hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottleLimits {
    /// Failed logins per account (normalised email) within `login_window`.
    pub failures_per_account: u32,
    /// Failed logins per client address within `login_window`.
    pub failures_per_address: u32,
    /// The login window.
    pub login_window: Duration,
    /// Signups per client address within `signup_window`.
    pub signups_per_address: u32,
    /// The signup window.
    pub signup_window: Duration,
    /// Most keys kept; beyond it, expired keys and then the least recently used are dropped.
    pub max_keys: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            failures_per_account: 5,
            failures_per_address: 20,
            login_window: Duration::from_secs(15 * 60),
            signups_per_address: 10,
            signup_window: Duration::from_secs(3600),
            max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    LoginAddress(IpAddr),
    SignupAddress(IpAddr),
}

/// The longest email kept as a key (longer ones cannot be valid addresses anyway).
const MAX_KEY_EMAIL: usize = 320;

/// A login attempt counted before its password was checked; settle it with
/// [`Throttle::login_succeeded`] or simply drop it (a failure stays counted).
#[derive(Debug)]
pub(crate) struct LoginAttempt {
    account: Key,
    address: Option<Key>,
    at: Timestamp,
}

/// The runtime's throttle.
#[derive(Debug)]
pub(crate) struct Throttle {
    limits: ThrottleLimits,
    attempts: Mutex<HashMap<Key, VecDeque<Timestamp>>>,
}

impl Throttle {
    pub(crate) fn new(limits: ThrottleLimits) -> Self {
        Self { limits, attempts: Mutex::new(HashMap::new()) }
    }

    /// Counts a login attempt for `email` (normalised) from `address` as a failure unless it is
    /// settled as a success. Refused, without counting, when either limit is reached.
    ///
    /// Counting before the password check makes concurrent guesses count too.
    pub(crate) fn begin_login(&self, email: &str, address: Option<IpAddr>, now: Timestamp) -> Result<LoginAttempt> {
        let account = Key::Account(email.chars().take(MAX_KEY_EMAIL).collect());
        let address = address.map(Key::LoginAddress);
        let window = self.limits.login_window;
        let mut map = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut wait = wait_for(&mut map, &account, self.limits.failures_per_account, window, now);
        if let Some(a) = &address {
            wait = wait.max(wait_for(&mut map, a, self.limits.failures_per_address, window, now));
        }
        if let Some(wait) = wait {
            return Err(limited("too_many_login_attempts", "too many failed logins: try again later", wait));
        }
        self.make_room(&mut map, now);
        map.entry(account.clone()).or_default().push_back(now);
        if let Some(a) = &address {
            map.entry(a.clone()).or_default().push_back(now);
        }
        Ok(LoginAttempt { account, address, at: now })
    }

    /// The attempt's password was right: the account's counter starts over and the attempt does
    /// not count against the address.
    pub(crate) fn login_succeeded(&self, attempt: LoginAttempt) {
        let mut map = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&attempt.account);
        if let Some(key) = attempt.address {
            if let Some(times) = map.get_mut(&key) {
                if let Some(pos) = times.iter().rposition(|t| *t == attempt.at) {
                    times.remove(pos);
                }
                if times.is_empty() {
                    map.remove(&key);
                }
            }
        }
    }

    /// Counts a signup from `address`; refused when the limit is reached. Without an address
    /// (an embedding app calling the service directly) nothing is counted.
    pub(crate) fn signup(&self, address: Option<IpAddr>, now: Timestamp) -> Result<()> {
        let Some(address) = address else { return Ok(()) };
        let key = Key::SignupAddress(address);
        let mut map = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(wait) = wait_for(&mut map, &key, self.limits.signups_per_address, self.limits.signup_window, now) {
            return Err(limited("too_many_signups", "too many signups from this address: try again later", wait));
        }
        self.make_room(&mut map, now);
        map.entry(key).or_default().push_back(now);
        Ok(())
    }

    /// Keeps the map under `max_keys`: drops keys whose attempts all left their window, then,
    /// if still full, the key with the oldest latest attempt.
    fn make_room(&self, map: &mut HashMap<Key, VecDeque<Timestamp>>, now: Timestamp) {
        if map.len() < self.limits.max_keys {
            return;
        }
        let longest = self.limits.login_window.max(self.limits.signup_window);
        let horizon = now.minus(longest);
        map.retain(|_, times| times.back().is_some_and(|t| *t > horizon));
        while map.len() >= self.limits.max_keys.max(1) {
            let oldest = map.iter().min_by_key(|(_, times)| times.back().copied()).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
    }
}

/// Prunes `key`'s attempts outside the window; when `limit` remain, how long until the oldest
/// leaves it.
fn wait_for(
    map: &mut HashMap<Key, VecDeque<Timestamp>>,
    key: &Key,
    limit: u32,
    window: Duration,
    now: Timestamp,
) -> Option<Duration> {
    let times = map.get_mut(key)?;
    let horizon = now.minus(window);
    while times.front().is_some_and(|t| *t <= horizon) {
        times.pop_front();
    }
    if times.is_empty() {
        map.remove(key);
        return None;
    }
    if times.len() < limit as usize {
        return None;
    }
    let oldest = *times.front()?;
    Some(oldest.plus(window).since(now).max(Duration::from_secs(1)))
}

fn limited(code: &'static str, message: &str, wait: Duration) -> Error {
    let secs = wait.as_millis().div_ceil(1000);
    let secs = u64::try_from(secs).unwrap_or(u64::MAX);
    Error::new(ErrorKind::RateLimited, code, message)
        .with_detail("retryAfterSeconds", secs)
        .with_retry_after(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_ms(1_000_000_000 + secs * 1000)
    }

    #[test]
    fn account_locks_after_five_failures_and_unlocks_after_the_window() {
        let t = Throttle::new(ThrottleLimits::default());
        for i in 0..5 {
            drop(t.begin_login("a@x.io", None, at(i)).unwrap());
        }
        let e = t.begin_login("a@x.io", None, at(10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.code(), "too_many_login_attempts");
        assert!(e.is_retryable());
        assert_eq!(e.details().unwrap()["retryAfterSeconds"], 890);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(890)));
        // Another account is not affected.
        assert!(t.begin_login("b@x.io", None, at(10)).is_ok());
        // The oldest failure leaves the window at 900 s.
        assert!(t.begin_login("a@x.io", None, at(899)).is_err());
        assert!(t.begin_login("a@x.io", None, at(900)).is_ok());
    }

    #[test]
    fn success_resets_the_account_and_does_not_count_against_the_address() {
        let t = Throttle::new(ThrottleLimits::default());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..4 {
            drop(t.begin_login("a@x.io", Some(ip), at(i)).unwrap());
        }
        let ok = t.begin_login("a@x.io", Some(ip), at(5)).unwrap();
        t.login_succeeded(ok);
        for i in 0..4 {
            drop(t.begin_login("a@x.io", Some(ip), at(6 + i)).unwrap());
        }
        assert!(t.begin_login("a@x.io", Some(ip), at(20)).is_ok(), "the counter started over");
    }

    #[test]
    fn address_locks_after_twenty_failures_across_accounts() {
        let t = Throttle::new(ThrottleLimits::default());
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        for i in 0..20 {
            drop(t.begin_login(&format!("user{i}@x.io"), Some(ip), at(i)).unwrap());
        }
        let e = t.begin_login("fresh@x.io", Some(ip), at(30)).unwrap_err();
        assert_eq!(e.code(), "too_many_login_attempts");
        assert!(t.begin_login("fresh@x.io", Some("2001:db8::2".parse().unwrap()), at(30)).is_ok());
    }

    #[test]
    fn signups_are_limited_per_address_per_hour() {
        let t = Throttle::new(ThrottleLimits::default());
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        for i in 0..10 {
            t.signup(Some(ip), at(i)).unwrap();
        }
        let e = t.signup(Some(ip), at(60)).unwrap_err();
        assert_eq!((e.kind(), e.code()), (ErrorKind::RateLimited, "too_many_signups"));
        assert!(t.signup(None, at(60)).is_ok());
        assert!(t.signup(Some(ip), at(3600)).is_ok());
    }

    #[test]
    fn the_map_stays_bounded() {
        let limits = ThrottleLimits { max_keys: 8, ..ThrottleLimits::default() };
        let t = Throttle::new(limits);
        for i in 0..100 {
            drop(t.begin_login(&format!("u{i}@x.io"), None, at(i)).unwrap());
        }
        assert!(t.attempts.lock().unwrap().len() <= 8);
    }
}
