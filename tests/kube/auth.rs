//! Our API-server client's authentication (`src/k8s/transport.rs`) as the fake API server sees it:
//! for each kind of kubeconfig user the `Authorization` header that arrives with a pod lookup,
//! and a clear error for one it cannot use. (The fake stands in for kube-apiserver, which cannot
//! run here; it records the headers exactly as they came over the wire.)

use std::path::Path;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use multus::k8s::client::{Source, connect};
use serde_json::json;

use crate::support::apiserver::FakeApiServer;

/// Writes a kubeconfig for `server` whose user is `user` (YAML flow mapping).
fn kubeconfig(server: &FakeApiServer, dir: &Path, user: &str) -> std::path::PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\n\
         current-context: fake\nusers:\n- name: u\n  user: {user}\n",
        server.url()
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `Authorization` headers of the requests a pod GET through our client sends, or its error.
fn authorization_seen(server: &FakeApiServer, kubeconfig: &Path) -> Result<Vec<String>, String> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    server.on_request(Box::new(move |req| {
        let auth = req.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone());
        record.lock().unwrap().push(auth.unwrap_or_default());
        None
    }));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let got = rt.block_on(async {
        let client = connect(&Source::Kubeconfig(kubeconfig.to_path_buf())).await.map_err(|e| e.to_string())?;
        let pods: Api<Pod> = Api::namespaced(client.expect("a kubeconfig gives a client"), "ns");
        pods.get("p").await.map(|_| ()).map_err(|e| e.to_string())
    });
    server.clear_hooks();
    got.map(|()| seen.lock().unwrap().clone())
}

#[test]
fn each_kind_of_kubeconfig_user_authenticates_as_it_says() {
    let server = FakeApiServer::start();
    server.create_pod(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "ns", "name": "p"}}));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "from-file\n").unwrap();
    // An exec credential plugin (client-go's protocol) that answers with what it was told.
    let plugin = dir.path().join("cred");
    std::fs::write(
        &plugin,
        "#!/bin/sh\ncase \"$KUBERNETES_EXEC_INFO\" in *'\"kind\":\"ExecCredential\"'*) ;; *) exit 3;; esac\n\
         printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"exec-%s-%s\"}}' \"$1\" \"$WHO\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cases = [
        ("{token: inline}".to_string(), "Bearer inline"),
        (format!("{{tokenFile: {}}}", token_file.display()), "Bearer from-file"),
        ("{username: admin, password: secret}".to_string(), "Basic YWRtaW46c2VjcmV0"),
        ("{auth-provider: {name: oidc, config: {id-token: oidc-id}}}".to_string(), "Bearer oidc-id"),
        (
            format!(
                "{{exec: {{apiVersion: client.authentication.k8s.io/v1, command: {}, args: [arg], \
                 env: [{{name: WHO, value: me}}]}}}}",
                plugin.display()
            ),
            "Bearer exec-arg-me",
        ),
        ("{}".to_string(), ""),
    ];
    for (user, expected) in cases {
        let kc = kubeconfig(&server, dir.path(), &user);
        let seen = authorization_seen(&server, &kc).unwrap_or_else(|e| panic!("user {user}: {e}"));
        assert!(!seen.is_empty(), "user {user}: no request arrived");
        assert!(seen.iter().all(|h| h == expected), "user {user}: sent {seen:?}, expected {expected:?}");
    }
}

#[test]
fn an_unusable_kubeconfig_user_is_a_clear_error() {
    let server = FakeApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-token");
    let failing = dir.path().join("failing");
    std::fs::write(&failing, "#!/bin/sh\necho 'no credentials for you' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&failing, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cases = [
        (format!("{{tokenFile: {}}}", missing.display()), format!("cannot read token file {}", missing.display())),
        ("{auth-provider: {name: gcp, config: {}}}".to_string(), "auth-provider gcp has no access-token".to_string()),
        (
            format!("{{exec: {{command: {}}}}}", failing.display()),
            format!("exec credential plugin {}", failing.display()),
        ),
        ("{client-certificate-data: Zm9v}".to_string(), "client-certificate but no client-key".to_string()),
    ];
    for (user, says) in cases {
        let kc = kubeconfig(&server, dir.path(), &user);
        let e = authorization_seen(&server, &kc).expect_err(&user);
        assert!(e.contains(&says), "user {user}: {e}");
    }
    assert!(server.requests().is_empty(), "nothing is sent without usable credentials: {:?}", server.requests());
}
