//! [`HttpWebhookTransport`]: the reqwest-based [`WebhookTransport`] with an SSRF guard.
//!
//! Targets are checked when a webhook is configured ([`WebhookTransport::check_target`]) and
//! again on every connection: a custom DNS resolver drops refused addresses, so a name that
//! rebinds to a private address between the check and the POST is still refused. Hosts given as
//! IP literals never reach a resolver and are checked before sending.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ezw_core::ports::{
    TransportError, TransportErrorKind, WebhookRequest, WebhookResponse, WebhookTransport, RESPONSE_EXCERPT_BYTES,
};
use ezw_core::{Error, Result};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use url::{Host, Url};

const USER_AGENT: &str = concat!("ezw-webhooks/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends webhook deliveries over HTTP(S) through one pooled client that never follows redirects,
/// ignores proxy settings from the environment and (unless private targets are allowed) refuses
/// loopback, private, link-local, shared, documentation, multicast and reserved addresses.
#[derive(Clone)]
pub struct HttpWebhookTransport {
    client: reqwest::Client,
    allow_private_targets: bool,
}

impl HttpWebhookTransport {
    /// A transport; `allow_private_targets` disables the SSRF guard (local development only).
    ///
    /// # Panics
    /// If the TLS backend cannot be initialised.
    #[must_use]
    pub fn new(allow_private_targets: bool) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            // No per-host idle cap: many webhooks often share one receiver host, and a cap below
            // the deliveries in flight closes connections only to reopen them (the idle timeout
            // bounds the pool).
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .dns_resolver(std::sync::Arc::new(GuardedResolver { allow_private_targets }))
            .build()
            .expect("the webhook HTTP client must build");
        Self { client, allow_private_targets }
    }
}

impl Default for HttpWebhookTransport {
    fn default() -> Self {
        Self::new(false)
    }
}

impl fmt::Debug for HttpWebhookTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpWebhookTransport")
            .field("allow_private_targets", &self.allow_private_targets)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl WebhookTransport for HttpWebhookTransport {
    async fn check_target(&self, url: &str) -> Result<()> {
        let url = parse_target(url)?;
        let host = url.host_str().unwrap_or_default();
        let addrs: Vec<IpAddr> = match literal_ip(&url) {
            Some(ip) => vec![ip],
            None => {
                let port = url.port_or_known_default().unwrap_or(80);
                tokio::net::lookup_host((host, port)).await.map(|a| a.map(|a| a.ip()).collect()).unwrap_or_default()
            }
        };
        if addrs.is_empty() {
            return Err(Error::invalid(
                "webhook_target_unresolvable",
                format!("the webhook target {host} could not be resolved"),
            ));
        }
        if !self.allow_private_targets && addrs.into_iter().any(is_refused_address) {
            return Err(Error::invalid(
                "webhook_target_private",
                format!(
                    "the webhook target {host} resolves to a private or loopback address; start the server with \
                     --allow-private-webhook-targets for local development"
                ),
            ));
        }
        Ok(())
    }

    async fn post(&self, request: WebhookRequest) -> Result<WebhookResponse, TransportError> {
        let url =
            parse_target(&request.url).map_err(|e| TransportError::new(TransportErrorKind::Other, e.message()))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        if !self.allow_private_targets && literal_ip(&url).is_some_and(is_refused_address) {
            return Err(TransportError::new(
                TransportErrorKind::RefusedTarget,
                format!("{host} is a private or loopback address"),
            ));
        }
        let mut builder =
            self.client.post(url).timeout(request.timeout).header(CONTENT_TYPE, "application/json").body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        let mut response = builder.send().await.map_err(|e| transport_error(e, &host))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        // The answer already arrived: a body that breaks or stalls only shortens the excerpt.
        let mut excerpt = Vec::new();
        while excerpt.len() < RESPONSE_EXCERPT_BYTES {
            let Ok(Some(chunk)) = response.chunk().await else { break };
            let take = chunk.len().min(RESPONSE_EXCERPT_BYTES - excerpt.len());
            excerpt.extend_from_slice(&chunk[..take]);
        }
        Ok(WebhookResponse { status, retry_after, body_excerpt: String::from_utf8_lossy(&excerpt).into_owned() })
    }
}

/// Whether the SSRF guard refuses `ip`: loopback, unspecified, private, link-local (cloud
/// metadata), shared/CGNAT, IETF protocol assignments, documentation, benchmarking, multicast,
/// reserved and broadcast IPv4; IPv6 loopback, unspecified, unique-local, link-local,
/// site-local, multicast and documentation. IPv4-mapped, IPv4-compatible and NAT64
/// (`64:ff9b::/96`) IPv6 addresses are judged by their embedded IPv4 address.
#[must_use]
pub fn is_refused_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_refused_v4(ip),
        IpAddr::V6(ip) => is_refused_v6(ip),
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    matches!(
        ip.octets(),
        [0 | 10 | 127 | 224..=255, ..]
            | [100, 64..=127, ..]
            | [169, 254, ..]
            | [172, 16..=31, ..]
            | [192, 168, ..]
            | [192, 0, 0 | 2, _]
            | [198, 18 | 19, ..]
            | [198, 51, 100, _]
            | [203, 0, 113, _]
    )
}

fn is_refused_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // `::ffff:a.b.c.d`, `::a.b.c.d` (including `::` and `::1`, which map into 0.0.0.0/8) and NAT64.
    if let Some(v4) = ip.to_ipv4() {
        return is_refused_v4(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return is_refused_v4(Ipv4Addr::new(a, b, c, d));
    }
    s[0] & 0xfe00 == 0xfc00 // unique local fc00::/7
        || s[0] & 0xffc0 == 0xfe80 // link-local fe80::/10
        || s[0] & 0xffc0 == 0xfec0 // deprecated site-local fec0::/10
        || s[0] & 0xff00 == 0xff00 // multicast ff00::/8
        || s[..2] == [0x2001, 0x0db8] // documentation 2001:db8::/32
}

/// Parses a webhook URL: `http`/`https` with an authority (`scheme://host...`). The WHATWG
/// parser would turn `http:///x` or `http:x` into a host of `x`; those are refused here.
fn parse_target(raw: &str) -> Result<Url> {
    let invalid = |why: &str| Error::invalid("invalid_webhook_url", format!("the webhook URL {why}"));
    let url = Url::parse(raw.trim()).map_err(|e| invalid(&format!("is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must use http or https"));
    }
    let authority = raw.trim().split_once(':').and_then(|(_, rest)| rest.strip_prefix("//"));
    if url.host_str().is_none_or(str::is_empty) || authority.is_none_or(|a| a.starts_with(['/', '\\'])) {
        return Err(invalid("must have a host"));
    }
    Ok(url)
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(ip.into()),
        Host::Ipv6(ip) => Some(ip.into()),
        Host::Domain(_) => None,
    }
}

/// The resolver's refusal, found again in the error's source chain to report `RefusedTarget`.
#[derive(Debug)]
struct RefusedTargetError(String);

impl fmt::Display for RefusedTargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} resolves only to private or loopback addresses", self.0)
    }
}

impl StdError for RefusedTargetError {}

/// Resolves with the system resolver and, unless private targets are allowed, drops refused
/// addresses; runs on every new connection, so DNS rebinding cannot get past it.
struct GuardedResolver {
    allow_private_targets: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private_targets;
        Box::pin(async move {
            let host = name.as_str();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| allow_private || !is_refused_address(a.ip())).collect();
            if allowed.is_empty() {
                return Err(if resolved.is_empty() {
                    format!("{host} has no addresses").into()
                } else {
                    Box::new(RefusedTargetError(host.to_owned())) as _
                });
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Classifies a failed send; the message names the host only (never userinfo, path or query).
fn transport_error(e: reqwest::Error, host: &str) -> TransportError {
    let e = e.without_url();
    let chain = || std::iter::successors(Some(&e as &(dyn StdError + 'static)), |e| (*e).source());
    let kind = if chain().any(|e| e.is::<RefusedTargetError>()) {
        TransportErrorKind::RefusedTarget
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_timeout() {
        TransportErrorKind::Timeout
    } else {
        TransportErrorKind::Other
    };
    let detail: Vec<String> = chain().map(ToString::to_string).collect();
    TransportError::new(kind, format!("POST to {host} failed: {}", detail.join(": ")))
}

/// `Retry-After` as delta-seconds or an IMF-fixdate, as a wait from `now`; unparsable values are
/// ignored.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    Some(parse_http_date(value)?.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    fn num(s: &str, len: usize) -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    }
    let parts: Vec<&str> = value.split(' ').collect();
    let [weekday, day, month, year, time, "GMT"] = parts[..] else { return None };
    let time: Vec<&str> = time.split(':').collect();
    let [hour, minute, second] = time[..] else { return None };
    if weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let (day, year) = (num(day, 2)?, num(year, 4)?);
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let (hour, minute, second) = (num(hour, 2)?, num(minute, 2)?, num(second, 2)?);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(u64::try_from(secs).map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;

    use super::*;

    #[test]
    fn refused_addresses() {
        let cases: &[(&str, bool)] = &[
            ("127.0.0.1", true),
            ("127.255.1.2", true),
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("100.100.100.200", true),
            ("100.128.0.1", false),
            ("192.0.0.8", true),
            ("192.0.2.1", true),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("198.18.0.1", true),
            ("198.19.255.255", true),
            ("198.20.0.1", false),
            ("224.0.0.1", true),
            ("239.255.255.250", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            ("93.184.216.34", false),
            ("::1", true),
            ("::", true),
            ("fc00::1", true),
            ("fd00:ec2::254", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            ("2001:db8::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:8.8.8.8", false),
            ("::10.0.0.1", true),
            ("::8.8.8.8", false),
            ("64:ff9b::a9fe:a9fe", true),
            ("64:ff9b::808:808", false),
            ("2606:4700:4700::1111", false),
            ("2001:4860:4860::8888", false),
        ];
        for (ip, refused) in cases {
            assert_eq!(is_refused_address(ip.parse().unwrap()), *refused, "{ip}");
        }
    }

    #[test]
    fn http_dates() {
        let at = |s| parse_http_date(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(at("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(at("Tue, 29 Feb 2000 23:59:59 GMT"), Some(951_868_799));
        for bad in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 UTC", ""] {
            assert_eq!(at(bad), None, "{bad}");
        }
        let mut headers = HeaderMap::new();
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        headers.insert(RETRY_AFTER, "Sun, 06 Nov 1994 08:50:07 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, "Sun, 06 Nov 1994 08:00:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }

    /// A loopback receiver; `/count` and `/target` count the requests they see.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
        async fn echo(headers: HeaderMap, body: String) -> String {
            let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            format!("{}|{}|{}|{body}", h("content-type"), h("x-ezw-signature"), h("user-agent"))
        }
        async fn count(State(hits): State<Arc<AtomicUsize>>) -> &'static str {
            hits.fetch_add(1, Ordering::SeqCst);
            "counted"
        }
        async fn retry(headers: HeaderMap) -> (StatusCode, [(&'static str, String); 1]) {
            let value = headers.get("x-test-retry-after").unwrap().to_str().unwrap().to_owned();
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", value)])
        }
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/echo", post(echo))
            .route("/count", post(count))
            .route("/target", post(count).get(count))
            .route("/retry", post(retry))
            .route("/big", post(|| async { "a".repeat(10 * 1024) }))
            .route("/redirect", post(|| async { (StatusCode::FOUND, [("location", "/target")]) }))
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, hits)
    }

    fn request(url: String, headers: Vec<(&'static str, String)>) -> WebhookRequest {
        WebhookRequest { url, headers, body: r#"{"event":"ping"}"#.to_owned(), timeout: Duration::from_secs(5) }
    }

    #[tokio::test]
    async fn posts_body_and_headers() {
        let (addr, _) = server().await;
        let transport = HttpWebhookTransport::new(true);
        let headers = vec![("x-ezw-signature", "v1=abc".to_owned())];
        let response = transport.post(request(format!("http://{addr}/echo"), headers)).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.retry_after, None);
        assert_eq!(response.body_excerpt, format!(r#"application/json|v1=abc|{USER_AGENT}|{{"event":"ping"}}"#));
    }

    #[tokio::test]
    async fn retry_after_seconds_and_dates() {
        let (addr, _) = server().await;
        let transport = HttpWebhookTransport::new(true);
        let post = |value: &str| {
            let req = request(format!("http://{addr}/retry"), vec![("x-test-retry-after", value.to_owned())]);
            let transport = transport.clone();
            async move { transport.post(req).await.unwrap() }
        };
        let response = post("7").await;
        assert_eq!((response.status, response.retry_after), (503, Some(Duration::from_secs(7))));
        let future = post("Fri, 01 Jan 2100 00:00:00 GMT").await.retry_after.unwrap();
        assert!(future > Duration::from_secs(70 * 365 * 86_400), "{future:?}");
        assert_eq!(post("Sun, 06 Nov 1994 08:49:37 GMT").await.retry_after, Some(Duration::ZERO));
        assert_eq!(post("whenever").await.retry_after, None);
    }

    #[tokio::test]
    async fn excerpt_is_capped() {
        let (addr, _) = server().await;
        let response = HttpWebhookTransport::new(true).post(request(format!("http://{addr}/big"), vec![])).await;
        let excerpt = response.unwrap().body_excerpt;
        assert_eq!(excerpt.len(), RESPONSE_EXCERPT_BYTES);
        assert!(excerpt.bytes().all(|b| b == b'a'));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (addr, hits) = server().await;
        let response = HttpWebhookTransport::new(true).post(request(format!("http://{addr}/redirect"), vec![])).await;
        assert_eq!(response.unwrap().status, 302);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn slow_receiver_times_out() {
        let (addr, _) = server().await;
        let mut req = request(format!("http://{addr}/slow"), vec![]);
        req.timeout = Duration::from_millis(300);
        let e = HttpWebhookTransport::new(true).post(req).await.unwrap_err();
        assert_eq!(e.kind, TransportErrorKind::Timeout, "{e}");
    }

    #[tokio::test]
    async fn closed_port_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://user:secret@127.0.0.1:{port}/hook?token=hush");
        let e = HttpWebhookTransport::new(true).post(request(url, vec![])).await.unwrap_err();
        assert_eq!(e.kind, TransportErrorKind::Connect, "{e}");
        assert!(!e.message.contains("secret") && !e.message.contains("hush"), "{e}");
    }

    #[tokio::test]
    async fn private_targets_are_refused_when_sending() {
        let (addr, hits) = server().await;
        let transport = HttpWebhookTransport::default();
        let port = addr.port();
        for url in [format!("http://127.0.0.1:{port}/count"), format!("http://localhost:{port}/count")] {
            let e = transport.post(request(url.clone(), vec![])).await.unwrap_err();
            assert_eq!(e.kind, TransportErrorKind::RefusedTarget, "{url}: {e}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        // The same server is reachable when private targets are allowed.
        let url = format!("http://localhost:{port}/count");
        assert_eq!(HttpWebhookTransport::new(true).post(request(url, vec![])).await.unwrap().status, 200);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn check_target_codes() {
        let guarded = HttpWebhookTransport::default();
        let cases = [
            ("http://localhost:8080/x", "webhook_target_private"),
            ("http://127.0.0.1/", "webhook_target_private"),
            ("http://169.254.169.254/latest/meta-data", "webhook_target_private"),
            ("http://[::1]/", "webhook_target_private"),
            ("http://10.1.2.3/", "webhook_target_private"),
            ("http://[::ffff:10.0.0.1]/", "webhook_target_private"),
            ("ftp://example.com/", "invalid_webhook_url"),
            ("not a url", "invalid_webhook_url"),
            ("http:///nohost", "invalid_webhook_url"),
            ("http:example.com", "invalid_webhook_url"),
            ("mailto:someone@example.com", "invalid_webhook_url"),
        ];
        for (url, code) in cases {
            let e = guarded.check_target(url).await.unwrap_err();
            assert_eq!(e.code(), code, "{url}: {e}");
        }
        let e = guarded.check_target("https://user:hunter2@10.0.0.1/hook").await.unwrap_err();
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(e.message().contains("--allow-private-webhook-targets"), "{e}");

        let open = HttpWebhookTransport::new(true);
        open.check_target("http://localhost:8080/x").await.unwrap();
        open.check_target("http://10.1.2.3/").await.unwrap();
    }
}
