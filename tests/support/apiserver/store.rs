//! The fake API server's objects and their semantics: the served resource types, the global
//! resourceVersion, create/update/patch/delete with the real server's rules and `Status` errors,
//! selectors, and which watch events a write produces. No IO here.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::FakeRequest;

/// One resource type the fake serves.
pub(super) struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub short_names: &'static [&'static str],
    /// Built-in types: list items carry no `apiVersion`/`kind`, no `metadata.generation`.
    pub builtin: bool,
    /// Has a `status` subresource: writes to the main resource keep the stored status.
    pub status: bool,
    /// DELETE answers with the deleted object (pods) rather than a `Status` (custom resources).
    pub returns_deleted: bool,
    /// Field selectors the real server accepts besides `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
    /// Lives in a namespace (false: cluster-scoped, stored under the namespace "").
    pub namespaced: bool,
    /// Has the `approval` subresource (CertificateSigningRequests).
    pub approval: bool,
}

pub(super) const POD: usize = 0;
pub(super) const NAD: usize = 1;
pub(super) const EVENT: usize = 2;
pub(super) const EVENT_V1: usize = 3;
pub(super) const CSR: usize = 4;

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "type",
];
const EVENT_V1_FIELDS: &[&str] =
    &["regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "reason", "type"];

#[rustfmt::skip]
pub(super) static KINDS: [Kind; 5] = [
    Kind { group: "", version: "v1", plural: "pods", singular: "pod", kind: "Pod", short_names: &["po"],
           builtin: true, status: true, returns_deleted: true, fields: POD_FIELDS, namespaced: true, approval: false },
    Kind { group: "k8s.cni.cncf.io", version: "v1", plural: "network-attachment-definitions",
           singular: "network-attachment-definition", kind: "NetworkAttachmentDefinition",
           short_names: &["net-attach-def"], builtin: false, status: false, returns_deleted: false, fields: &[],
           namespaced: true, approval: false },
    Kind { group: "", version: "v1", plural: "events", singular: "event", kind: "Event", short_names: &["ev"],
           builtin: true, status: false, returns_deleted: false, fields: EVENT_FIELDS, namespaced: true, approval: false },
    Kind { group: "events.k8s.io", version: "v1", plural: "events", singular: "event", kind: "Event",
           short_names: &["ev"], builtin: true, status: false, returns_deleted: false, fields: EVENT_V1_FIELDS,
           namespaced: true, approval: false },
    Kind { group: "certificates.k8s.io", version: "v1", plural: "certificatesigningrequests",
           singular: "certificatesigningrequest", kind: "CertificateSigningRequest", short_names: &["csr"],
           builtin: true, status: true, returns_deleted: false, fields: &["spec.signerName"], namespaced: false,
           approval: true },
];

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The resource as the real server names it in messages: `pods`, `network-attachment-definitions.k8s.cni.cncf.io`.
    fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    pub fn details(&self, name: &str) -> Value {
        let mut d = json!({"name": name});
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d["kind"] = json!(self.plural);
        d
    }
}

/// The `Status` reason and the HTTP reason phrase of a code.
pub(super) fn code_names(code: u16) -> (&'static str, &'static str) {
    match code {
        200 => ("", "OK"),
        201 => ("", "Created"),
        400 => ("BadRequest", "Bad Request"),
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "Forbidden"),
        404 => ("NotFound", "Not Found"),
        405 => ("MethodNotAllowed", "Method Not Allowed"),
        409 => ("Conflict", "Conflict"),
        410 => ("Expired", "Gone"),
        415 => ("UnsupportedMediaType", "Unsupported Media Type"),
        422 => ("Invalid", "Unprocessable Entity"),
        429 => ("TooManyRequests", "Too Many Requests"),
        500 => ("InternalError", "Internal Server Error"),
        503 => ("ServiceUnavailable", "Service Unavailable"),
        504 => ("Timeout", "Gateway Timeout"),
        _ => ("", "Unknown"),
    }
}

/// A failure `Status` as the real server writes it.
pub(super) fn status_object(code: u16, reason: &str, message: &str, details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
           "reason": reason, "details": details, "code": code})
}

/// An API error, answered as a `Status` object.
#[derive(Debug)]
pub(super) struct ApiError {
    pub code: u16,
    reason: &'static str,
    pub message: String,
    details: Value,
}

impl ApiError {
    pub fn new(code: u16, message: impl Into<String>) -> ApiError {
        ApiError { code, reason: code_names(code).0, message: message.into(), details: json!({}) }
    }

    fn about(code: u16, reason: &'static str, message: String, k: &Kind, name: &str) -> ApiError {
        ApiError { code, reason, message, details: k.details(name) }
    }

    pub fn not_found(k: &Kind, name: &str) -> ApiError {
        ApiError::about(404, "NotFound", format!("{} \"{name}\" not found", k.qualified()), k, name)
    }

    pub fn no_route() -> ApiError {
        ApiError::new(404, "the server could not find the requested resource")
    }

    /// What the real server answers an `Accept` it cannot produce for the request.
    pub fn not_acceptable() -> ApiError {
        ApiError::new(
            406,
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "the server does not allow this method on the requested resource")
    }

    pub fn conflict(k: &Kind, name: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            k.qualified()
        );
        ApiError::about(409, "Conflict", message, k, name)
    }

    pub fn bad_body(k: &Kind, why: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, format!("{} in version \"{}\" cannot be handled as a {}: {why}", k.kind, k.version, k.kind))
    }

    pub fn status(&self) -> Value {
        status_object(self.code, self.reason, &self.message, self.details.clone())
    }
}

/// What a PUT or PATCH may change.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Part {
    /// The main resource: the stored status is kept.
    Object,
    /// The `status` subresource: the stored spec is kept (the pods/status strategy).
    Status,
    /// A test's direct write (a kubelet or controller playing its part): everything.
    All,
    /// The `approval` subresource: only `status.conditions` changes (the CSR approval strategy).
    Approval,
}

/// One write, kept for watches.
struct Entry {
    rv: u64,
    kind: usize,
    event: &'static str,
    old: Option<Value>,
    object: Value,
}

pub(super) struct State {
    pub rv: u64,
    /// Watches from a resourceVersion below this one get 410 Expired.
    pub compacted: u64,
    /// Per kind, by (namespace, name): the order etcd lists them in.
    pub objects: Vec<BTreeMap<(String, String), Value>>,
    log: Vec<Entry>,
    pub requests: Vec<(String, String)>,
    /// (requests left, code)
    pub fail_next: (u32, u16),
    pub status_conflicts: u32,
    seed: u64,
}

pub(super) fn key_of(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    let field = |f: &str| meta[f].as_str().unwrap_or_default().to_string();
    (field("namespace"), field("name"))
}

pub(super) fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Copies `key` from `from` into `to`, or removes it from `to` when `from` lacks it.
fn keep(to: &mut Value, from: &Value, key: &str) {
    match from.get(key) {
        Some(v) => to[key] = v.clone(),
        None => {
            if let Some(m) = to.as_object_mut() {
                m.remove(key);
            }
        }
    }
}

impl State {
    pub fn new() -> State {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        State {
            rv: 1000,
            compacted: 0,
            objects: KINDS.iter().map(|_| BTreeMap::new()).collect(),
            log: Vec::new(),
            requests: Vec::new(),
            fail_next: (0, 0),
            status_conflicts: 0,
            seed: (now.as_nanos() as u64 ^ u64::from(std::process::id()) << 32) | 1,
        }
    }

    fn random(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn uid(&mut self) -> String {
        let (a, b) = (self.random(), self.random());
        let (time_mid, time_low) = ((a >> 16) & 0xffff, a & 0xfff);
        let (clock, node) = ((b >> 48) & 0x3fff | 0x8000, b & 0xffff_ffff_ffff);
        format!("{:08x}-{time_mid:04x}-4{time_low:03x}-{clock:04x}-{node:012x}", a >> 32)
    }

    /// Forgets the watch history.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.log.clear();
    }

    /// Stores a write: bumps the global resourceVersion, sets it on the object, logs the event.
    fn commit(&mut self, kind: usize, event: &'static str, old: Option<Value>, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if event == "DELETED" {
            self.objects[kind].remove(&key_of(&obj));
        } else {
            self.objects[kind].insert(key_of(&obj), obj.clone());
        }
        self.log.push(Entry { rv: self.rv, kind, event, old, object: obj.clone() });
        obj
    }

    pub fn get(&self, kind: usize, ns: &str, name: &str) -> Result<Value, ApiError> {
        let key = (ns.to_string(), name.to_string());
        self.objects[kind].get(&key).cloned().ok_or_else(|| ApiError::not_found(&KINDS[kind], name))
    }

    fn matching<'a>(&'a self, kind: usize, ns: Option<&'a str>, sel: &'a Selector) -> impl Iterator<Item = &'a Value> {
        self.objects[kind]
            .iter()
            .filter(move |((ons, _), o)| ns.is_none_or(|ns| ns == ons) && sel.matches(o))
            .map(|(_, o)| o)
    }

    pub fn list(&self, kind: usize, ns: Option<&str>, sel: &Selector) -> Value {
        let k = &KINDS[kind];
        let items: Vec<Value> = self
            .matching(kind, ns, sel)
            .map(|o| {
                let mut o = o.clone();
                if k.builtin {
                    let m = o.as_object_mut().unwrap();
                    m.remove("apiVersion");
                    m.remove("kind");
                }
                o
            })
            .collect();
        json!({"kind": format!("{}List", k.kind), "apiVersion": k.api_version(),
               "metadata": {"resourceVersion": self.rv.to_string()}, "items": items})
    }

    /// `from_api`: a POST (the real server's create rules) rather than a test's direct store.
    pub fn create(&mut self, kind: usize, ns: &str, obj: Value, from_api: bool) -> Result<Value, ApiError> {
        let k = &KINDS[kind];
        let Some(body) = obj.as_object().filter(|o| o.get("metadata").is_none_or(Value::is_object)) else {
            return Err(ApiError::bad_body(k, "not an object"));
        };
        let meta = &obj["metadata"];
        if meta["namespace"].as_str().is_some_and(|n| !n.is_empty() && n != ns) {
            let msg = "the namespace of the provided object does not match the namespace sent on the request";
            return Err(ApiError::new(400, msg));
        }
        if from_api && meta["resourceVersion"].as_str().is_some_and(|v| !v.is_empty()) {
            let msg = "Internal error occurred: resourceVersion should not be set on objects to be created";
            return Err(ApiError::new(500, msg));
        }
        let mut name = meta["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            let Some(prefix) = meta["generateName"].as_str().filter(|p| !p.is_empty()).map(str::to_string) else {
                let msg = "metadata.name: Required value: name or generateName is required";
                return Err(ApiError::new(422, format!("{} \"\" is invalid: {msg}", k.kind)));
            };
            const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let suffix: String = (0..5).map(|_| ALPHABET[(self.random() % 27) as usize] as char).collect();
            name = format!("{prefix}{suffix}");
        }
        if self.objects[kind].contains_key(&(ns.to_string(), name.clone())) {
            let message = format!("{} \"{name}\" already exists", k.qualified());
            return Err(ApiError::about(409, "AlreadyExists", message, k, &name));
        }
        // apiVersion and kind first, as the real server serializes them.
        let mut new = json!({"apiVersion": k.api_version(), "kind": k.kind});
        for (key, v) in body.iter().filter(|(key, _)| *key != "apiVersion" && *key != "kind") {
            new[key] = v.clone();
        }
        let meta = &mut new["metadata"];
        meta["name"] = json!(name);
        if k.namespaced {
            meta["namespace"] = json!(ns);
        }
        if meta["uid"].as_str().is_none_or(str::is_empty) {
            meta["uid"] = json!(self.uid());
        }
        meta["creationTimestamp"] = json!(rfc3339_now());
        if !k.builtin {
            meta["generation"] = json!(1);
        }
        if kind == POD && from_api {
            new["status"] = json!({"phase": "Pending"});
        }
        Ok(self.commit(kind, "ADDED", None, new))
    }

    /// Finishes PUT and PATCH: identity stays the server's, `part` says what may change; an
    /// unchanged object is not written (no new resourceVersion, no event).
    pub fn update(&mut self, kind: usize, old: Value, mut new: Value, part: Part) -> Result<Value, ApiError> {
        let k = &KINDS[kind];
        if !new["metadata"].is_object() {
            return Err(ApiError::bad_body(k, "not an object with metadata"));
        }
        keep(&mut new, &old, "apiVersion");
        keep(&mut new, &old, "kind");
        for field in ["name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"] {
            keep(&mut new["metadata"], &old["metadata"], field);
        }
        if part == Part::Approval {
            let conditions = new["status"]["conditions"].clone();
            new = old.clone();
            new["status"]["conditions"] = conditions;
        } else if part == Part::Status {
            keep(&mut new, &old, "spec");
            keep(&mut new["metadata"], &old["metadata"], "deletionTimestamp");
            keep(&mut new["metadata"], &old["metadata"], "ownerReferences");
        } else if part == Part::Object && k.status {
            keep(&mut new, &old, "status");
        }
        if new == old {
            return Ok(old);
        }
        if !k.builtin && new.get("spec") != old.get("spec") {
            new["metadata"]["generation"] = json!(old["metadata"]["generation"].as_u64().unwrap_or(0) + 1);
        }
        Ok(self.commit(kind, "MODIFIED", Some(old), new))
    }

    /// A write naming a resourceVersion other than the stored one conflicts.
    fn precondition(kind: usize, name: &str, new: &Value, old: &Value) -> Result<(), ApiError> {
        match new["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() && rv != old["metadata"]["resourceVersion"] => {
                Err(ApiError::conflict(&KINDS[kind], name))
            }
            _ => Ok(()),
        }
    }

    pub fn replace(&mut self, kind: usize, ns: &str, name: &str, body: &[u8], part: Part) -> Result<Value, ApiError> {
        let new: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_body(&KINDS[kind], e))?;
        let old = self.get(kind, ns, name)?;
        if let Some(n) = new["metadata"]["name"].as_str().filter(|n| *n != name) {
            let msg = format!("the name of the object ({n}) does not match the name on the URL ({name})");
            return Err(ApiError::new(400, msg));
        }
        Self::precondition(kind, name, &new, &old)?;
        self.update(kind, old, new, part)
    }

    pub fn patch(
        &mut self,
        kind: usize,
        ns: &str,
        name: &str,
        ctype: &str,
        body: &[u8],
        part: Part,
    ) -> Result<Value, ApiError> {
        let k = &KINDS[kind];
        let merge = match ctype.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => true,
            "application/strategic-merge-patch+json" if k.builtin => true,
            "application/json-patch+json" => false,
            _ => {
                let strategic = if k.builtin { ", application/strategic-merge-patch+json" } else { "" };
                let msg = format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{strategic}"
                );
                return Err(ApiError::new(415, msg));
            }
        };
        let patch: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::new(400, format!("error decoding patch: {e}")))?;
        let old = self.get(kind, ns, name)?;
        let mut new = old.clone();
        if merge {
            merge_patch(&mut new, &patch);
        } else {
            json_patch(&mut new, &patch).map_err(|e| ApiError::new(422, e))?;
        }
        Self::precondition(kind, name, &new, &old)?;
        self.update(kind, old, new, part)
    }

    pub fn delete(&mut self, kind: usize, ns: &str, name: &str) -> Result<Value, ApiError> {
        let old = self.get(kind, ns, name)?;
        Ok(self.commit(kind, "DELETED", Some(old.clone()), old))
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// RFC 6902 JSON patch: `add`, `remove`, `replace`, `test`.
fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("json patch: not an array of operations")? {
        let path = op["path"].as_str().ok_or("json patch: operation without path")?;
        let (parent, last) = path.rsplit_once('/').ok_or_else(|| format!("json patch: bad path {path:?}"))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let (kind, value) = (op["op"].as_str().unwrap_or_default(), op["value"].clone());
        if kind == "test" {
            if doc.pointer(path) != Some(&value) {
                return Err(format!("json patch: test of {path:?} failed"));
            }
            continue;
        }
        let missing = || format!("json patch: {path:?} does not exist");
        match (kind, doc.pointer_mut(parent).ok_or_else(missing)?) {
            ("add", Value::Object(m)) => {
                m.insert(last, value);
            }
            ("replace", Value::Object(m)) => *m.get_mut(&last).ok_or_else(missing)? = value,
            ("remove", Value::Object(m)) => {
                m.remove(&last).ok_or_else(missing)?;
            }
            ("add", Value::Array(a)) if last == "-" => a.push(value),
            (kind, Value::Array(a)) => match (kind, last.parse::<usize>().map_err(|_| missing())?) {
                ("add", i) if i <= a.len() => a.insert(i, value),
                ("replace", i) if i < a.len() => a[i] = value,
                ("remove", i) if i < a.len() => {
                    a.remove(i);
                }
                _ => return Err(missing()),
            },
            _ => return Err(format!("json patch: unsupported operation {kind:?} on {path:?}")),
        }
    }
    Ok(())
}

enum Label {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

/// Field and label selectors of a LIST or WATCH.
pub(super) struct Selector {
    /// (field path, equal?, value)
    fields: Vec<(String, bool, String)>,
    labels: Vec<Label>,
}

impl Selector {
    pub fn parse(k: &Kind, req: &FakeRequest) -> Result<Selector, ApiError> {
        let mut fields = Vec::new();
        for term in req.param("fieldSelector").unwrap_or_default().split(',').filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f.trim(), false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f.trim(), true, v)
            } else {
                return Err(ApiError::new(400, format!("invalid selector: '{term}'; can't understand '{term}'")));
            };
            if !matches!(field, "metadata.name" | "metadata.namespace") && !k.fields.contains(&field) {
                return Err(ApiError::new(400, format!("field label not supported: {field}")));
            }
            fields.push((field.to_string(), eq, value.trim().to_string()));
        }
        let mut labels = Vec::new();
        for term in req.param("labelSelector").unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
            labels.push(if term.contains('(') {
                let msg = format!("fake apiserver: set-based label selectors are not supported: {term}");
                return Err(ApiError::new(400, msg));
            } else if let Some((l, v)) = term.split_once("!=") {
                Label::Ne(l.trim().into(), v.trim().into())
            } else if let Some((l, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Label::Eq(l.trim().into(), v.trim().into())
            } else if let Some(l) = term.strip_prefix('!') {
                Label::Absent(l.trim().into())
            } else {
                Label::Exists(term.into())
            });
        }
        Ok(Selector { fields, labels })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let field_ok = self.fields.iter().all(|(path, eq, want)| {
            let got = match path.split('.').fold(obj, |v, seg| &v[seg]) {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (got == *want) == *eq
        });
        let labels = &obj["metadata"]["labels"];
        field_ok
            && self.labels.iter().all(|l| match l {
                Label::Eq(k, v) => labels[k].as_str() == Some(v),
                Label::Ne(k, v) => labels[k].as_str() != Some(v),
                Label::Exists(k) => labels.get(k).is_some(),
                Label::Absent(k) => labels.get(k).is_none(),
            })
    }
}

/// An open watch: what to send first, then every matching write after `cursor` until `deadline`.
pub(super) struct Watch {
    kind: usize,
    ns: Option<String>,
    sel: Selector,
    pub initial: Vec<Value>,
    pub cursor: u64,
    pub deadline: Instant,
    /// Only the initial events (an ERROR), then the end of the stream.
    pub finished: bool,
    /// The client asked for metadata only (`as=PartialObjectMetadata`).
    meta_only: bool,
}

/// Which form of an object the client's `Accept` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    Full,
    /// `application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`
    Meta,
    /// `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`
    MetaList,
}

impl Form {
    pub fn of(req: &FakeRequest) -> Form {
        let accept = req.header("accept").unwrap_or_default();
        if accept.contains("as=PartialObjectMetadataList;") {
            Form::MetaList
        } else if accept.contains("as=PartialObjectMetadata;") {
            Form::Meta
        } else {
            Form::Full
        }
    }
}

/// An object as the real server answers a metadata-only request: kind and apiVersion erased.
pub(super) fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// A list as the real server answers a metadata-only LIST.
pub(super) fn partial_list(list: &Value) -> Value {
    let items: Vec<Value> = list["items"].as_array().map(|a| a.iter().map(partial).collect()).unwrap_or_default();
    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list["metadata"],
           "items": items})
}

impl Watch {
    fn event(&self, kind: &str, object: &Value) -> Value {
        let object = if self.meta_only && kind != "ERROR" { partial(object) } else { object.clone() };
        json!({"type": kind, "object": object})
    }
}

impl Watch {
    pub fn open(
        st: &State,
        kind: usize,
        ns: Option<&str>,
        sel: Selector,
        req: &FakeRequest,
    ) -> Result<Watch, ApiError> {
        let k = &KINDS[kind];
        // The real server's default is a random 30 to 60 minutes.
        let timeout = match req.param("timeoutSeconds") {
            Some(t) => t.parse().map_err(|_| ApiError::new(400, format!("invalid timeoutSeconds {t:?}")))?,
            None => 1800,
        };
        let mut w = Watch {
            kind,
            ns: ns.map(str::to_string),
            sel,
            initial: Vec::new(),
            cursor: st.rv,
            deadline: Instant::now() + Duration::from_secs(timeout),
            finished: false,
            meta_only: Form::of(req) != Form::Full,
        };
        let rv = req.param("resourceVersion").unwrap_or_default();
        let initial_events = req.flag("sendInitialEvents");
        if rv.is_empty() || rv == "0" || initial_events {
            // Synthetic ADDED events for the current state, as the real server sends them.
            let current = st.matching(kind, ns, &w.sel);
            let initial = current.map(|o| w.event("ADDED", o)).collect();
            w.initial = initial;
            if initial_events && req.flag("allowWatchBookmarks") {
                let meta = json!({"resourceVersion": st.rv.to_string(), "creationTimestamp": null,
                                  "annotations": {"k8s.io/initial-events-end": "true"}});
                let obj = json!({"kind": k.kind, "apiVersion": k.api_version(), "metadata": meta});
                let bookmark = w.event("BOOKMARK", &obj);
                w.initial.push(bookmark);
            }
            return Ok(w);
        }
        w.cursor = rv.parse().map_err(|_| ApiError::new(400, format!("invalid resource version: {rv}")))?;
        if w.cursor < st.compacted {
            let msg = format!("too old resource version: {} ({})", w.cursor, st.compacted + 1);
            let mut status = status_object(410, "Expired", &msg, json!({}));
            status.as_object_mut().unwrap().remove("details");
            w.initial.push(json!({"type": "ERROR", "object": status}));
            w.finished = true;
        }
        Ok(w)
    }

    /// The events of the writes after `cursor` this watch sees, and the new cursor. A write that
    /// moves an object into or out of the selection is an ADDED or DELETED, as on the real server.
    pub fn after(&self, st: &State, cursor: u64) -> (Vec<Value>, u64) {
        let start = st.log.partition_point(|e| e.rv <= cursor);
        let mut events = Vec::new();
        for e in &st.log[start..] {
            if e.kind != self.kind || self.ns.as_deref().is_some_and(|ns| key_of(&e.object).0 != ns) {
                continue;
            }
            let was = e.old.as_ref().is_some_and(|o| self.sel.matches(o));
            let is = self.sel.matches(&e.object);
            let event = match (e.event, was, is) {
                ("DELETED", _, true) | ("MODIFIED", true, false) => "DELETED",
                ("ADDED", _, true) | ("MODIFIED", false, true) => "ADDED",
                ("MODIFIED", true, true) => "MODIFIED",
                _ => continue,
            };
            events.push(self.event(event, &e.object));
        }
        (events, st.rv.max(cursor))
    }
}

/// Now as RFC 3339 UTC with seconds, as Kubernetes writes timestamps.
fn rfc3339_now() -> String {
    multus::logging::rfc3339(SystemTime::now())
}
