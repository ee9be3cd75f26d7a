//! Device-info files (the Network Plumbing WG device-info spec, as network-attachment-definition-
//! client `pkg/utils` implements it): a device plugin leaves `<base>/dp/<resource>-<deviceID>-device.json`,
//! multus copies it on ADD to `<base>/cni/<delegate name>-<containerID>_<ifname>` (the file
//! whose path it passes to the delegate as runtimeConfig `CNIDeviceInfoFile`), reports that
//! file's content as the network-status `device-info`, and removes it on DEL. `/` in a resource,
//! device ID or file name becomes `-`. Paths are built from a base directory ([`BASE_DIR`] on a
//! node) so tests can use a temp dir. Also the delegate-side half: `deviceID`/`pciBusID`
//! injected into the delegate's config.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cni::error::Error;
use crate::files::{Durability, write_atomic};

/// Upstream's `baseDevInfoPath`.
pub const BASE_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo";
/// The runtimeConfig capability carrying the CNI device-info file's path.
pub const CAPABILITY: &str = "CNIDeviceInfoFile";

/// `<base>/dp/<resource>-<deviceID>-device.json` (upstream `getDPDeviceInfoPath`).
pub fn dp_path(base: &Path, resource_name: &str, device_id: &str) -> PathBuf {
    base.join("dp").join(format!("{}-{}-device.json", resource_name.replace('/', "-"), device_id.replace('/', "-")))
}

/// `<base>/cni/<file name with / → ->` (upstream `GetCNIDeviceInfoPath`).
pub fn cni_path(base: &Path, file_name: &str) -> PathBuf {
    base.join("cni").join(file_name.replace('/', "-"))
}

/// The CNI file of one attachment: `<delegate name>-<containerID>_<ifname>`, the name being
/// `<namespace>/<nad>` for a NetworkAttachmentDefinition (upstream `delegateRuntimeConfig`).
pub fn cni_path_for(base: &Path, delegate_name: &str, container_id: &str, ifname: &str) -> PathBuf {
    cni_path(base, &format!("{delegate_name}-{container_id}_{ifname}"))
}

/// The device-info document (network-attachment-definition-client `v1.DeviceInfo`). Fields it
/// does not know are dropped, as upstream's typed round trip drops them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceInfo {
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<PciDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdpa: Option<VdpaDevice>,
    #[serde(rename = "vhost-user", default, skip_serializing_if = "Option::is_none")]
    pub vhost_user: Option<VhostDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memif: Option<MemifDevice>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PciDevice {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    #[serde(rename = "vhost-net", default, skip_serializing_if = "String::is_empty")]
    pub vhostnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rdma_device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pf_pci_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub representor_device: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VdpaDevice {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent_device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pf_pci_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub representor_device: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VhostDevice {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MemifDevice {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

impl DeviceInfo {
    pub fn parse(bytes: &[u8], path: &Path) -> Result<DeviceInfo, Error> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Decoding(format!("cannot parse device-info file {}: {e}", path.display())))
    }

    /// The bytes upstream writes: Go's `json.Marshal` of the struct (field order, HTML-safe escapes).
    pub fn to_go_json(&self) -> Vec<u8> {
        let text = serde_json::to_string(self).expect("device info serializes");
        crate::golang::html_escape(&text).into_bytes()
    }

    /// The network-status `device-info` value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("device info serializes")
    }
}

/// Reads a device-info file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<DeviceInfo>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => DeviceInfo::parse(&bytes, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("failed to read device-info file", path, e)),
    }
}

/// On ADD: the device plugin's file for (resource, device) copied to `cni_file` (upstream
/// `CopyDeviceInfoForCNIFromDP`): parsed, re-encoded as upstream writes it, mode 0444, written
/// atomically. Fails when the DP file is missing or malformed, or the CNI file already exists
/// (upstream refuses to overwrite); multus only logs such failures.
pub fn copy_dp_to_cni(base: &Path, resource_name: &str, device_id: &str, cni_file: &Path) -> Result<(), Error> {
    let dp = dp_path(base, resource_name, device_id);
    let info = read(&dp)?.ok_or_else(|| {
        Error::io("failed to read device-info file", &dp, std::io::Error::from(std::io::ErrorKind::NotFound))
    })?;
    if std::fs::symlink_metadata(cni_file).is_ok() {
        return Err(Error::Internal(format!("device information file already exists: {}", cni_file.display())));
    }
    Ok(write_atomic(cni_file, &info.to_go_json(), 0o444, 0o755, Durability::Rename)?)
}

/// On DEL: removes the CNI file; a missing one is fine.
pub fn remove(cni_file: &Path) -> Result<(), Error> {
    match std::fs::remove_file(cni_file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("failed to remove device-info file", cni_file, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_as_upstream_names_them() {
        let base = Path::new(BASE_DIR);
        assert_eq!(
            dp_path(base, "intel.com/sriov_netdevice", "0000:03:02.0"),
            Path::new("/var/run/k8s.cni.cncf.io/devinfo/dp/intel.com-sriov_netdevice-0000:03:02.0-device.json")
        );
        assert_eq!(
            dp_path(base, "a/b/c", "x/y"),
            Path::new("/var/run/k8s.cni.cncf.io/devinfo/dp/a-b-c-x-y-device.json")
        );
        assert_eq!(
            cni_path_for(base, "default/sriov-net", "3f2a9c", "net1"),
            Path::new("/var/run/k8s.cni.cncf.io/devinfo/cni/default-sriov-net-3f2a9c_net1")
        );
        assert_eq!(cni_path(Path::new("/b"), "x/y/z"), Path::new("/b/cni/x-y-z"));
    }

    #[test]
    fn device_info_round_trip_drops_unknown_keys_and_keeps_go_order() {
        let doc = br#"{"extra":1,"pci":{"rdma-device":"mlx5_3","pci-address":"0000:03:02.0","x":true},"version":"1.1.0","type":"pci"}"#;
        let info = DeviceInfo::parse(doc, Path::new("f")).unwrap();
        assert_eq!(
            String::from_utf8(info.to_go_json()).unwrap(),
            r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0","rdma-device":"mlx5_3"}}"#
        );
        let vhost = DeviceInfo::parse(
            br#"{"type":"vhost-user","vhost-user":{"mode":"server","path":"/a&b<c>"}}"#,
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(vhost.to_go_json()).unwrap(),
            r#"{"type":"vhost-user","vhost-user":{"mode":"server","path":"/a\u0026b\u003cc\u003e"}}"#
        );
        assert_eq!(vhost.to_value(), json!({"type":"vhost-user","vhost-user":{"mode":"server","path":"/a&b<c>"}}));
        assert!(DeviceInfo::parse(b"[1]", Path::new("/x/f")).unwrap_err().to_string().contains("/x/f"));
    }
}
