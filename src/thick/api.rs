//! The shim↔daemon wire contract, identical to upstream's `pkg/server/api`: the request and reply
//! documents, the error body, the endpoints and where the socket lives. Pure data; the server is
//! `server`, the client `client`.
//!
//! A request is `{"env":{...},"config":"<base64 of the raw stdin bytes>","interfaceAttributes":{...}}`
//! (Go's `[]byte` marshals as standard base64; `interfaceAttributes` only for `/delegate`). An ADD
//! is answered `{"Result": <result in 1.1.0>}`. A failure is answered with status 400 and a CNI
//! error object (what upstream 4.2.4 introduced; 4.2.1 sent text, which our shim still understands).

use alloc::collections::BTreeMap;
#[cfg(not(multus_nostd))]
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::cni::error::CniError;
use crate::prelude::*;

/// The CNI operation of a runtime, forwarded by the shim.
pub const CNI_ENDPOINT: &str = "/cni";
/// One delegate on its own (hot-plug clients such as multus-dynamic-networks-controller).
pub const DELEGATE_ENDPOINT: &str = "/delegate";
/// Liveness: `GET` or `POST`, answered 200 with an empty body.
pub const HEALTH_ENDPOINT: &str = "/healthz";
/// The metrics endpoint on the separate TCP listener.
pub const METRICS_ENDPOINT: &str = "/metrics";
/// The host part of the URLs upstream puts on the socket (`http://dummy/cni`).
pub const URL_HOST: &str = "dummy";
/// Where the shim and the daemon look for the socket unless configured otherwise.
pub const DEFAULT_SOCKET_DIR: &str = "/run/multus/";
pub const SOCKET_FILE: &str = "multus.sock";
/// The version ADD results travel in (upstream converts with `cni100.NewResultFromResult`).
pub const WIRE_RESULT_VERSION: &str = "1.1.0";

/// `<dir>/multus.sock`; an empty `dir` means [`DEFAULT_SOCKET_DIR`].
#[cfg(not(multus_nostd))]
pub fn socket_path(dir: &Path) -> PathBuf {
    if dir.as_os_str().is_empty() { Path::new(DEFAULT_SOCKET_DIR).join(SOCKET_FILE) } else { dir.join(SOCKET_FILE) }
}

/// A request to `/cni` or `/delegate` (upstream `api.Request`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// CNI_* and every other variable of the shim's environment.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The CNI config the runtime gave the shim on stdin, byte for byte.
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<u8>,
    #[serde(rename = "interfaceAttributes", default, skip_serializing_if = "Option::is_none")]
    pub interface_attributes: Option<InterfaceAttributes>,
}

/// What a hot-plug client asks for the interface (upstream `DelegateInterfaceAttributes`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceAttributes {
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Upstream's field has no `omitempty`: it is sent as `null` when absent.
    #[serde(rename = "cni-args", default)]
    pub cni_args: Option<Map<String, Value>>,
}

impl Request {
    /// The request a shim sends: its whole environment (names trimmed, unnamed entries dropped,
    /// as upstream's `newCNIRequest`) and its stdin.
    pub fn from_process(env: impl IntoIterator<Item = (String, String)>, stdin: &[u8]) -> Request {
        let env = env.into_iter().map(|(k, v)| (k.trim().to_string(), v)).filter(|(k, _)| !k.is_empty()).collect();
        Request { env, config: stdin.to_vec(), interface_attributes: None }
    }

    /// A `/delegate` request as upstream's `CreateDelegateRequest` builds it.
    #[allow(clippy::too_many_arguments)]
    pub fn delegate(
        command: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        pod_namespace: &str,
        pod_name: &str,
        pod_uid: &str,
        config: &[u8],
        attributes: Option<InterfaceAttributes>,
    ) -> Request {
        let env = [
            ("CNI_COMMAND", command.to_uppercase()),
            ("CNI_CONTAINERID", container_id.to_string()),
            ("CNI_NETNS", netns.to_string()),
            ("CNI_IFNAME", ifname.to_string()),
            ("CNI_ARGS", format!("K8S_POD_NAMESPACE={pod_namespace};K8S_POD_NAME={pod_name};K8S_POD_UID={pod_uid}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Request { env, config: config.to_vec(), interface_attributes: attributes }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a request serializes")
    }
}

/// The reply to an ADD (upstream `api.Response`: the field has no JSON tag, hence `Result`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "Result", alias = "result")]
    pub result: Option<Value>,
}

impl Response {
    /// The document for an ADD's result, which must already be in [`WIRE_RESULT_VERSION`].
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a response serializes")
    }
}

/// The body of a 400 reply.
pub fn error_body(e: &CniError) -> Vec<u8> {
    e.to_json().into_bytes()
}

/// A CNI error object in a reply body, if that is what it holds (code 0 is not an error).
pub fn parse_error_body(body: &[u8]) -> Option<CniError> {
    serde_json::from_slice::<CniError>(body).ok().filter(|e| e.code != 0)
}

/// Go decodes `null` into a nil map/slice/string; serde would refuse it.
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Go's `[]byte` in JSON: standard base64 with padding; `null` is empty.
mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::prelude::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            // Go's decoder skips the line breaks some encoders insert.
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.replace(['\r', '\n'], ""))
                .map_err(|e| serde::de::Error::custom(format!("config is not base64: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GO_SHIM_REQUEST: &str = include_str!("../../tests/fixtures/thick/request-from-go-shim.json");
    const SHIM_REQUEST: &str = include_str!("../../tests/fixtures/thick/request-add.json");
    const DELEGATE_REQUEST: &str = include_str!("../../tests/fixtures/thick/request-delegate.json");
    const ADD_RESPONSE: &str = include_str!("../../tests/fixtures/thick/response-add.json");

    /// Bytes as upstream's Go shim marshals them: sorted env, HTML-escaped strings, base64 stdin.
    #[test]
    fn decodes_what_the_go_shim_sends() {
        let r: Request = serde_json::from_str(GO_SHIM_REQUEST.trim()).unwrap();
        assert_eq!(r.env["CNI_COMMAND"], "ADD");
        assert_eq!(
            r.env["CNI_ARGS"],
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=4c3f;K8S_POD_UID=9b7e-11"
        );
        assert_eq!(r.env["PS1"], "<root> & co", "Go's \\u003c escapes decode");
        assert_eq!(r.env.len(), 8);
        let conf: Value = serde_json::from_slice(&r.config).unwrap();
        assert_eq!(
            conf,
            json!({"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus-shim","logLevel":"verbose","logToStderr":true,"clusterNetwork":"/host/run/multus/cni/net.d/10-kindnet.conflist"})
        );
        assert_eq!(r.interface_attributes, None);
    }

    #[test]
    fn encodes_a_shim_request_byte_for_byte_as_go() {
        let stdin = br#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus-shim"}"#;
        let env = [
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_COMMAND", "DEL"),
            (" CNI_IFNAME", "eth0"),
            ("CNI_CONTAINERID", "c1"),
            ("", "no name"),
            ("CNI_NETNS", "/var/run/netns/p1"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let r = Request::from_process(env, stdin);
        assert_eq!(String::from_utf8(r.to_json()).unwrap(), SHIM_REQUEST.trim());
        assert_eq!(serde_json::from_str::<Request>(SHIM_REQUEST.trim()).unwrap(), r, "round trip");
    }

    #[test]
    fn delegate_request_as_create_delegate_request_builds_it() {
        let attrs = InterfaceAttributes {
            ips: vec!["10.77.0.5/24".into()],
            mac: "c2:b0:57:49:47:f1".into(),
            cni_args: Some(json!({"foo": "bar"}).as_object().unwrap().clone()),
        };
        let r = Request::delegate(
            "add",
            "c2",
            "/var/run/netns/p2",
            "net5",
            "ns",
            "p",
            "uid-1",
            br#"{"cniVersion":"1.0.0","name":"hot","type":"bridge"}"#,
            Some(attrs),
        );
        assert_eq!(String::from_utf8(r.to_json()).unwrap(), DELEGATE_REQUEST.trim());
        assert_eq!(serde_json::from_str::<Request>(DELEGATE_REQUEST.trim()).unwrap(), r);
    }

    #[test]
    fn nulls_and_missing_fields_decode_as_go_does() {
        let r: Request = serde_json::from_str(
            r#"{"env":null,"config":null,"interfaceAttributes":{"ips":null,"mac":null,"cni-args":null}}"#,
        )
        .unwrap();
        assert_eq!(r, Request { interface_attributes: Some(InterfaceAttributes::default()), ..Default::default() });
        assert_eq!(serde_json::from_str::<Request>("{}").unwrap(), Request::default());
        let e = serde_json::from_str::<Request>(r#"{"config":"not base64!"}"#).unwrap_err();
        assert!(e.to_string().contains("config is not base64"), "{e}");
        assert_eq!(String::from_utf8(Request::default().to_json()).unwrap(), "{}");
    }

    #[test]
    fn add_response_document() {
        let result = crate::cni::CniResult::parse(
            br#"{"cniVersion":"0.3.1","interfaces":[{"name":"tbr0","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/var/run/netns/p1"}],
            "ips":[{"version":"4","interface":1,"address":"10.99.0.2/24","gateway":"10.99.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#,
            "",
        )
        .unwrap();
        let doc = Response { result: Some(result.to_value(WIRE_RESULT_VERSION).unwrap()) }.to_json();
        assert_eq!(String::from_utf8(doc).unwrap(), ADD_RESPONSE.trim());
        let back: Response = serde_json::from_str(ADD_RESPONSE.trim()).unwrap();
        assert_eq!(back.result.unwrap()["cniVersion"], "1.1.0");
        let lower: Response = serde_json::from_str(r#"{"result":{"cniVersion":"1.1.0"}}"#).unwrap();
        assert!(lower.result.is_some(), "Go matches field names case-insensitively");
    }

    #[test]
    fn error_bodies() {
        let mut e = CniError::new(7, "failed to find plugin \"nosuch\"", "details");
        e.cni_version = Some("1.0.0".into());
        let body = error_body(&e);
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"cniVersion":"1.0.0","code":7,"msg":"failed to find plugin \"nosuch\"","details":"details"}"#
        );
        assert_eq!(parse_error_body(&body), Some(e));
        assert_eq!(parse_error_body(b"ContainerID:\"c\" ERRORED: boom\n"), None, "4.2.1's text body");
        assert_eq!(parse_error_body(br#"{"code":0,"msg":"x"}"#), None);
        assert_eq!(parse_error_body(br#"{"Result":{}}"#), None);
    }

    #[cfg(not(multus_nostd))]
    #[test]
    fn socket_paths() {
        assert_eq!(socket_path(Path::new("/host/run/multus/")), PathBuf::from("/host/run/multus/multus.sock"));
        assert_eq!(socket_path(Path::new("")), PathBuf::from("/run/multus/multus.sock"));
    }
}
