//! The client against a scripted transport: each step says which request must come next and
//! what it gets back, so the tests pin the exact sequence of requests.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::http::{Request, Response, Transport};
use super::*;

type Step = (&'static str, String, Result<Response, String>);
/// (method, url, headers, body length) of each request sent.
type Sent = (String, String, Vec<(String, String)>, usize);

#[derive(Default)]
struct Script {
    steps: RefCell<VecDeque<Step>>,
    seen: RefCell<Vec<Sent>>,
}

impl Script {
    fn new(steps: Vec<Step>) -> Script {
        Script { steps: RefCell::new(steps.into()), seen: RefCell::default() }
    }
    fn done(&self) {
        assert!(self.steps.borrow().is_empty(), "unused steps: {:?}", self.steps.borrow());
    }
    fn header_of(&self, i: usize, name: &str) -> Option<String> {
        self.seen.borrow()[i].2.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }
}

impl Transport for Script {
    fn send(&self, req: &Request) -> Result<Response, String> {
        self.seen.borrow_mut().push((req.method.into(), req.url.clone(), req.headers.clone(), req.body.len()));
        let (method, url, resp) = self
            .steps
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected request {} {}", req.method, req.url));
        assert_eq!((req.method, req.url.as_str()), (method, url.as_str()), "request order");
        resp
    }
}

fn r(status: u16, headers: &[(&str, &str)]) -> Result<Response, String> {
    Ok(Response {
        status,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: vec![],
    })
}

const B: &str = "http://127.0.0.1:5000/v2/multus";
const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn client(s: &Script) -> Client<'_> {
    let target = Target::parse("127.0.0.1:5000/multus", true).unwrap();
    let policy = Policy { attempts: 3, base: Duration::from_millis(100), max: Duration::from_secs(1) };
    Client::new(s, target, None, policy).with_clock(|_| {}, 1)
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn targets() {
    let t = Target::parse("registry.example.com:5000/a/b-c", false).unwrap();
    assert_eq!((t.scheme, t.host.as_str(), t.repo.as_str()), ("https", "registry.example.com:5000", "a/b-c"));
    assert_eq!(Target::parse("[::1]:5000/x", true).unwrap().base(), "http://[::1]:5000");
    assert_eq!(Target::parse("localhost/x", true).unwrap().scheme, "http");
    let err = |s: &str, i: bool| format!("{:#}", Target::parse(s, i).unwrap_err());
    assert!(err("ghcr.io/x", true).contains("loopback hosts only"));
    assert!(err("10.0.0.1:5000/x", true).contains("loopback hosts only"));
    assert!(err("http://127.0.0.1/x", true).contains("without a scheme"));
    assert!(err("127.0.0.1:5000", true).contains("HOST[:PORT]/REPO"));
    assert!(err("h/Upper", false).contains("not a valid name"));
    assert!(err("h/a..b", false).contains("not a valid name"));
    for ok in ["a", "a/b", "a__b", "a---b", "a.b_c", "0"] {
        check_repo(ok).unwrap();
    }
    for bad in ["", "-a", "a-", "a/", "a//b", "a._b", "a___b"] {
        assert!(check_repo(bad).is_err(), "{bad}");
    }
}

#[test]
fn transient_failures_are_retried_with_backoff_then_succeed() {
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(503, &[])),
        ("HEAD", format!("{B}/blobs/{D}"), Err(s("connection reset"))),
        ("HEAD", format!("{B}/blobs/{D}"), r(200, &[])),
    ]);
    let slept = RefCell::new(vec![]);
    let target = Target::parse("127.0.0.1:5000/multus", true).unwrap();
    let policy = Policy { attempts: 3, base: Duration::from_millis(100), max: Duration::from_secs(1) };
    let mut c = Client::new(&sc, target, None, policy).with_clock(|d| slept.borrow_mut().push(d), 1);
    assert_eq!(c.push_blob(D, b"x", &[], 0).unwrap(), BlobOutcome::Present);
    assert_eq!(c.stats.retries, 2);
    drop(c);
    let slept = slept.into_inner();
    assert_eq!(slept.len(), 2);
    assert!(slept[0] >= Duration::from_millis(50) && slept[0] <= Duration::from_millis(100), "{slept:?}");
    assert!(slept[1] >= Duration::from_millis(100) && slept[1] <= Duration::from_millis(200), "{slept:?}");
    sc.done();
}

#[test]
fn gives_up_after_the_attempts_naming_the_request() {
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(500, &[])),
        ("HEAD", format!("{B}/blobs/{D}"), r(429, &[("Retry-After", "0")])),
        ("HEAD", format!("{B}/blobs/{D}"), r(500, &[])),
    ]);
    let err = client(&sc).push_blob(D, b"x", &[], 0).unwrap_err().to_string();
    assert!(err.contains(&format!("HEAD blob {D}: 500")), "{err}");
    sc.done();
}

#[test]
fn monolithic_upload_is_post_then_put_with_the_digest_appended_to_location() {
    let loc = "/v2/multus/blobs/uploads/u1?_state=abc";
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(404, &[])),
        ("POST", format!("{B}/blobs/uploads/"), r(202, &[("Location", loc)])),
        (
            "PUT",
            format!("http://127.0.0.1:5000{loc}&digest=sha256%3A{}", &D[7..]),
            r(201, &[("Docker-Content-Digest", D)]),
        ),
    ]);
    let mut c = client(&sc);
    assert_eq!(c.push_blob(D, b"hello", &[], 1024).unwrap(), BlobOutcome::Uploaded);
    assert_eq!(c.stats.bytes_uploaded, 5);
    drop(c);
    assert_eq!(sc.seen.borrow()[2].3, 5, "the whole blob in the PUT");
    assert_eq!(sc.header_of(1, "Content-Length").as_deref(), Some("0"));
    sc.done();
}

#[test]
fn chunked_upload_patches_ranges_and_follows_each_location() {
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(404, &[])),
        ("POST", format!("{B}/blobs/uploads/"), r(202, &[("Location", "http://127.0.0.1:5000/up/1")])),
        ("PATCH", s("http://127.0.0.1:5000/up/1"), r(202, &[("Location", "/up/2"), ("Range", "0-3")])),
        ("PATCH", s("http://127.0.0.1:5000/up/2"), r(202, &[("Location", "/up/3?s=1"), ("Range", "0-7")])),
        ("PATCH", s("http://127.0.0.1:5000/up/3?s=1"), r(202, &[("Location", "/up/4"), ("Range", "0-9")])),
        ("PUT", format!("http://127.0.0.1:5000/up/4?digest=sha256%3A{}", &D[7..]), r(201, &[])),
    ]);
    let mut c = client(&sc);
    assert_eq!(c.push_blob(D, b"0123456789", &[], 4).unwrap(), BlobOutcome::Uploaded);
    drop(c);
    assert_eq!(sc.header_of(2, "Content-Range").as_deref(), Some("0-3"));
    assert_eq!(sc.header_of(4, "Content-Range").as_deref(), Some("8-9"));
    assert_eq!(sc.seen.borrow()[5].3, 0, "the closing PUT has no body");
    sc.done();
}

#[test]
fn a_lost_session_is_restarted_and_a_blob_that_landed_is_not_sent_again() {
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(404, &[])),
        ("POST", format!("{B}/blobs/uploads/"), r(202, &[("Location", "/up/1")])),
        // The registry forgot the session: its status is unknown too, so start over.
        ("PATCH", s("http://127.0.0.1:5000/up/1"), r(404, &[])),
        ("GET", s("http://127.0.0.1:5000/up/1"), r(404, &[])),
        ("HEAD", format!("{B}/blobs/{D}"), r(404, &[])),
        ("POST", format!("{B}/blobs/uploads/"), r(202, &[("Location", "/up/2")])),
        ("PATCH", s("http://127.0.0.1:5000/up/2"), r(202, &[("Location", "/up/3"), ("Range", "0-3")])),
        ("PATCH", s("http://127.0.0.1:5000/up/3"), r(202, &[("Location", "/up/4"), ("Range", "0-5")])),
        // The closing PUT's answer is lost, but the blob got there: HEAD finds it.
        ("PUT", format!("http://127.0.0.1:5000/up/4?digest=sha256%3A{}", &D[7..]), Err(s("connection reset"))),
        ("HEAD", format!("{B}/blobs/{D}"), r(200, &[])),
    ]);
    let mut c = client(&sc);
    assert_eq!(c.push_blob(D, b"abcdef", &[], 4).unwrap(), BlobOutcome::Uploaded);
    assert_eq!(c.stats.session_restarts, 2);
    sc.done();
}

#[test]
fn a_failed_chunk_resumes_at_the_offset_the_registry_reports() {
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(404, &[])),
        ("POST", format!("{B}/blobs/uploads/"), r(202, &[("Location", "/up/1")])),
        ("PATCH", s("http://127.0.0.1:5000/up/1"), r(202, &[("Location", "/up/2"), ("Range", "0-3")])),
        // The second chunk fails on the way; the session still has the first four bytes.
        ("PATCH", s("http://127.0.0.1:5000/up/2"), Err(s("connection reset"))),
        ("GET", s("http://127.0.0.1:5000/up/2"), r(204, &[("Location", "/up/2"), ("Range", "0-3")])),
        ("PATCH", s("http://127.0.0.1:5000/up/2"), r(202, &[("Location", "/up/3"), ("Range", "0-5")])),
        (
            "PUT",
            format!("http://127.0.0.1:5000/up/3?digest=sha256%3A{}", &D[7..]),
            r(201, &[("Docker-Content-Digest", D)]),
        ),
    ]);
    let mut c = client(&sc);
    assert_eq!(c.push_blob(D, b"abcdef", &[], 4).unwrap(), BlobOutcome::Uploaded);
    assert_eq!((c.stats.chunk_resumes, c.stats.session_restarts), (1, 0));
    drop(c);
    assert_eq!(sc.header_of(5, "Content-Range").as_deref(), Some("4-5"), "resumed at byte 4");
    sc.done();
}

#[test]
fn a_wrong_digest_is_final_not_retried() {
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(404, &[])),
        ("POST", format!("{B}/blobs/uploads/"), r(202, &[("Location", "/up/1")])),
        ("PUT", format!("http://127.0.0.1:5000/up/1?digest=sha256%3A{}", &D[7..]), r(400, &[])),
    ]);
    let err = client(&sc).push_blob(D, b"x", &[], 0).unwrap_err().to_string();
    assert!(err.contains("PUT blob") && err.contains("400"), "{err}");
    sc.done();
}

#[test]
fn mounts_fall_back_to_an_upload() {
    let mount = |from: &str| format!("{B}/blobs/uploads/?mount={D}&from={from}");
    // Mounted at once.
    let sc = Script::new(vec![("HEAD", format!("{B}/blobs/{D}"), r(404, &[])), ("POST", mount("a"), r(201, &[]))]);
    assert_eq!(client(&sc).push_blob(D, b"x", &["a".into()], 0).unwrap(), BlobOutcome::Mounted);
    sc.done();
    // Refused by one source (403), not found in the next (202 + a session we then use).
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(404, &[])),
        ("POST", mount("a"), r(403, &[])),
        ("POST", mount("b"), r(202, &[("Location", "/up/9")])),
        ("PUT", format!("http://127.0.0.1:5000/up/9?digest=sha256%3A{}", &D[7..]), r(201, &[])),
    ]);
    let from = ["a".to_string(), "b".to_string(), "multus".to_string()];
    assert_eq!(client(&sc).push_blob(D, b"x", &from, 0).unwrap(), BlobOutcome::Uploaded);
    sc.done();
    // Not in the first source (202 opens a session), mounted from the second: the session is cancelled.
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(404, &[])),
        ("POST", mount("a"), r(202, &[("Location", "/up/1")])),
        ("POST", mount("b"), r(201, &[])),
        ("DELETE", s("http://127.0.0.1:5000/up/1"), r(204, &[])),
    ]);
    assert_eq!(client(&sc).push_blob(D, b"x", &from, 0).unwrap(), BlobOutcome::Mounted);
    sc.done();
}

#[test]
fn basic_auth_answers_the_challenge_and_is_reused() {
    let sc = Script::new(vec![
        ("GET", s("http://127.0.0.1:5000/v2/"), r(401, &[("WWW-Authenticate", r#"Basic realm="test-realm""#)])),
        ("GET", s("http://127.0.0.1:5000/v2/"), r(200, &[])),
        ("HEAD", format!("{B}/blobs/{D}"), r(200, &[])),
    ]);
    let creds = Creds { username: "tester".into(), password: "secret".into() };
    let target = Target::parse("127.0.0.1:5000/multus", true).unwrap();
    let mut c = Client::new(&sc, target, Some(creds), Policy::default()).with_clock(|_| {}, 1);
    c.ping().unwrap();
    assert!(c.blob_exists(D).unwrap());
    drop(c);
    assert_eq!(sc.header_of(0, "Authorization"), None);
    assert_eq!(sc.header_of(1, "Authorization").as_deref(), Some("Basic dGVzdGVyOnNlY3JldA=="));
    assert_eq!(sc.header_of(2, "Authorization").as_deref(), Some("Basic dGVzdGVyOnNlY3JldA=="));
    sc.done();

    // Without credentials the error says what to pass.
    let sc = Script::new(vec![(
        "GET",
        s("http://127.0.0.1:5000/v2/"),
        r(401, &[("WWW-Authenticate", r#"Basic realm="test-realm""#)]),
    )]);
    let err = client(&sc).ping().unwrap_err().to_string();
    assert!(err.contains("--username/--password"), "{err}");
}

#[test]
fn bearer_flow_fetches_a_token_for_the_challenged_scope_and_retries() {
    let challenge = r#"Bearer realm="http://127.0.0.1:7000/token",service="reg",scope="repository:multus:pull,push""#;
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/blobs/{D}"), r(401, &[("Www-Authenticate", challenge)])),
        (
            "GET",
            s("http://127.0.0.1:7000/token?service=reg&scope=repository%3Amultus%3Apull%2Cpush"),
            Ok(Response { status: 200, headers: vec![], body: br#"{"token":"T1"}"#.to_vec() }),
        ),
        ("HEAD", format!("{B}/blobs/{D}"), r(200, &[])),
        // The token expires: a second 401 fetches a new one, once.
        ("HEAD", format!("{B}/blobs/{D}"), r(401, &[("Www-Authenticate", challenge)])),
        (
            "GET",
            s("http://127.0.0.1:7000/token?service=reg&scope=repository%3Amultus%3Apull%2Cpush"),
            Ok(Response { status: 200, headers: vec![], body: br#"{"access_token":"T2"}"#.to_vec() }),
        ),
        ("HEAD", format!("{B}/blobs/{D}"), r(401, &[("Www-Authenticate", challenge)])),
    ]);
    let creds = Creds { username: "tester".into(), password: "secret".into() };
    let target = Target::parse("127.0.0.1:5000/multus", true).unwrap();
    let mut c = Client::new(&sc, target, Some(creds), Policy::default()).with_clock(|_| {}, 1);
    assert!(c.blob_exists(D).unwrap());
    let err = c.blob_exists(D).unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
    assert_eq!(c.stats.tokens, 2);
    drop(c);
    assert_eq!(
        sc.header_of(1, "Authorization").as_deref(),
        Some("Basic dGVzdGVyOnNlY3JldA=="),
        "creds go to the realm"
    );
    assert_eq!(sc.header_of(2, "Authorization").as_deref(), Some("Bearer T1"));
    assert_eq!(sc.header_of(5, "Authorization").as_deref(), Some("Bearer T2"));
    sc.done();
}

#[test]
fn a_plain_http_token_realm_on_another_host_is_refused_over_tls() {
    let sc = Script::new(vec![(
        "GET",
        s("https://registry.example.com/v2/"),
        r(401, &[("WWW-Authenticate", r#"Bearer realm="http://auth.example.com/token""#)]),
    )]);
    let target = Target::parse("registry.example.com/multus", false).unwrap();
    let err = Client::new(&sc, target, None, Policy::default()).with_clock(|_| {}, 1).ping().unwrap_err().to_string();
    assert!(err.contains("refusing token realm"), "{err}");
}

#[test]
fn manifests_are_put_with_their_media_type_and_the_stored_digest_checked() {
    let sc = Script::new(vec![
        ("HEAD", format!("{B}/manifests/t1"), r(404, &[])),
        ("PUT", format!("{B}/manifests/t1"), r(502, &[])),
        ("PUT", format!("{B}/manifests/t1"), r(201, &[("Docker-Content-Digest", D)])),
        ("PUT", format!("{B}/manifests/t2"), r(201, &[("Docker-Content-Digest", "sha256:00")])),
    ]);
    let mut c = client(&sc);
    assert_eq!(c.manifest_digest("t1").unwrap(), None);
    c.put_manifest("t1", crate::image::oci::MT_INDEX, b"{}", D).unwrap();
    let err = c.put_manifest("t2", crate::image::oci::MT_INDEX, b"{}", D).unwrap_err().to_string();
    assert!(err.contains("the registry stored sha256:00"), "{err}");
    drop(c);
    assert_eq!(sc.header_of(0, "Accept").unwrap(), crate::image::oci::ACCEPT_MANIFESTS);
    assert_eq!(sc.header_of(1, "Content-Type").unwrap(), crate::image::oci::MT_INDEX);
    sc.done();
}
