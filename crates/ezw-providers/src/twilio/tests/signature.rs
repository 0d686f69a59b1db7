//! `X-Twilio-Signature`: every vector from `../shared/specs/README.md` (twilio-python's own
//! request-validator tests) through the real [`verify_signature`], plus HMAC-SHA1 (RFC 2202).

use ezw_core::ports::{InboundRequest, ProviderErrorKind};
use ezw_core::Secret;

use crate::twilio::ingest::{hmac_sha1, url_variants};
use crate::twilio::{compute_signature, verify_signature};

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const PARAMS: &str =
    "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";

fn form(url: &str, body: &str, signature: Option<&str>) -> InboundRequest {
    let mut headers = vec![("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned())];
    if let Some(sig) = signature {
        headers.push(("x-twilio-signature".to_owned(), sig.to_owned()));
    }
    InboundRequest {
        method: "POST".into(),
        public_url: url.into(),
        route: String::new(),
        query: Vec::new(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn verify(token: &str, request: &InboundRequest) -> Result<(), ProviderErrorKind> {
    verify_signature(&Secret::new(token), request).map_err(|e| {
        assert_eq!(e.code, "invalid_signature");
        e.kind
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hmac_sha1_matches_rfc_2202() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
        (vec![0x0b; 20], b"Hi There".to_vec(), "b617318655057264e28bc0b6fb378c8ef146be00"),
        (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        (vec![0xaa; 20], vec![0xdd; 50], "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
        ((1u8..=25).collect(), vec![0xcd; 50], "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
        (vec![0x0c; 20], b"Test With Truncation".to_vec(), "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
        (
            vec![0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112",
        ),
        (
            vec![0xaa; 80],
            b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data".to_vec(),
            "e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
        ),
    ];
    for (key, data, expected) in cases {
        assert_eq!(hex(&hmac_sha1(&key, &data)), expected);
    }
}

#[test]
fn vector_url_as_is() {
    assert_eq!(verify(TOKEN, &form(URL, PARAMS, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8="))), Ok(()));
}

#[test]
fn vector_signed_with_443_verifies_against_the_url_without_a_port_and_with_it() {
    let sig = Some("kvajT1Ptam85bY51eRf/AJRuM3w=");
    assert_eq!(verify(TOKEN, &form(URL, PARAMS, sig)), Ok(()));
    assert_eq!(verify(TOKEN, &form("https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS, sig)), Ok(()));
    // And the as-is signature is accepted when the public URL carries the explicit port.
    let as_is = Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    assert_eq!(verify(TOKEN, &form("https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS, as_is)), Ok(()));
}

#[test]
fn vector_http_with_80() {
    let sig = Some("0ZXoZLH/DfblKGATFgpif+LLRf4=");
    assert_eq!(verify(TOKEN, &form("http://mycompany.com/myapp.php?foo=1&bar=2", PARAMS, sig)), Ok(()));
    assert_eq!(verify(TOKEN, &form("http://mycompany.com:80/myapp.php?foo=1&bar=2", PARAMS, sig)), Ok(()));
}

#[test]
fn vector_http_with_1234_matches_only_that_exact_url() {
    let sig = Some("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
    assert_eq!(verify(TOKEN, &form("http://mycompany.com:1234/myapp.php?foo=1&bar=2", PARAMS, sig)), Ok(()));
    for other in [
        "http://mycompany.com/myapp.php?foo=1&bar=2",
        "http://mycompany.com:80/myapp.php?foo=1&bar=2",
        "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        "http://mycompany.com:12345/myapp.php?foo=1&bar=2",
        URL,
    ] {
        assert_eq!(verify(TOKEN, &form(other, PARAMS, sig)), Err(ProviderErrorKind::Unauthorized), "{other}");
    }
}

#[test]
fn vector_repeated_params_sorted_and_deduplicated() {
    let body = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
    assert_eq!(verify(TOKEN, &form(URL, body, Some("IK+Dwps556ElfBT0I3Rgjkr1wJU="))), Ok(()));
    // Order on the wire does not matter.
    let shuffled = "Digits=1234&SidAccount=AC123&Digits=5678&Sid=CA123&Digits=1234";
    assert_eq!(verify(TOKEN, &form(URL, shuffled, Some("IK+Dwps556ElfBT0I3Rgjkr1wJU="))), Ok(()));
}

fn json_request(url: &str, body: &str, signature: &str) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        public_url: url.into(),
        route: String::new(),
        query: Vec::new(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-twilio-signature".into(), signature.into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn vector_json_body_sha256() {
    let body = r#"{"property": "value", "boolean": true}"#;
    let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    assert_eq!(ezw_core::crypto::sha256_hex(body.as_bytes()), hash);
    let url = format!("{URL}&bodySHA256={hash}");
    let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
    assert_eq!(verify(TOKEN, &json_request(&url, body, sig)), Ok(()));
    // A body that does not hash to bodySHA256 fails even with the URL's signature.
    let tampered = r#"{"property": "other", "boolean": true}"#;
    assert_eq!(verify(TOKEN, &json_request(&url, tampered, sig)), Err(ProviderErrorKind::Unauthorized));
    // A JSON body without bodySHA256 cannot be verified.
    let unsigned = compute_signature(&Secret::new(TOKEN), URL, &[]);
    assert_eq!(verify(TOKEN, &json_request(URL, body, &unsigned)), Err(ProviderErrorKind::Unauthorized));
}

#[test]
fn compute_signature_reproduces_the_vector() {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(PARAMS.as_bytes()).into_owned().collect();
    assert_eq!(compute_signature(&Secret::new(TOKEN), URL, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
}

#[test]
fn tampered_param_wrong_token_and_missing_header_are_unauthorized() {
    let sig = Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    let tampered = PARAMS.replace("Digits=1234", "Digits=1235");
    assert_eq!(verify(TOKEN, &form(URL, &tampered, sig)), Err(ProviderErrorKind::Unauthorized));
    let extra = format!("{PARAMS}&Extra=1");
    assert_eq!(verify(TOKEN, &form(URL, &extra, sig)), Err(ProviderErrorKind::Unauthorized));
    assert_eq!(verify("54321", &form(URL, PARAMS, sig)), Err(ProviderErrorKind::Unauthorized));
    assert_eq!(
        verify(TOKEN, &form("https://mycompany.com/myapp.php?foo=1&bar=3", PARAMS, sig)),
        Err(ProviderErrorKind::Unauthorized)
    );
    assert_eq!(verify(TOKEN, &form(URL, PARAMS, None)), Err(ProviderErrorKind::Unauthorized));
    assert_eq!(verify(TOKEN, &form(URL, PARAMS, Some(""))), Err(ProviderErrorKind::Unauthorized));
    assert_eq!(
        verify(TOKEN, &form(URL, PARAMS, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8"))),
        Err(ProviderErrorKind::Unauthorized)
    );
}

#[test]
fn url_variants_change_only_the_port() {
    assert_eq!(url_variants(URL), vec![URL.to_owned(), "https://mycompany.com:443/myapp.php?foo=1&bar=2".to_owned()]);
    assert_eq!(
        url_variants("http://h.example:8080"),
        vec!["http://h.example:8080".to_owned(), "http://h.example".to_owned()]
    );
    assert_eq!(
        url_variants("https://[::1]/x?a=b:c"),
        vec!["https://[::1]/x?a=b:c".to_owned(), "https://[::1]:443/x?a=b:c".to_owned()]
    );
    assert_eq!(
        url_variants("https://[::1]:8443/x"),
        vec!["https://[::1]:8443/x".to_owned(), "https://[::1]/x".to_owned()]
    );
    assert_eq!(url_variants("not a url"), vec!["not a url".to_owned()]);
}
