//! The multi-call names: upstream's images ship `cert-approver` and `kubeconfig_generator` as
//! binaries of their own; ours are names of the binaries already in each image (`multus-daemon`,
//! `multus`), linked at upstream's paths, so they cost no image bytes. A binary started under one
//! of these names (the file name of `argv[0]`) runs that tool instead of itself.

/// Runs the tool `argv[0]` names, if it names one; its exit code.
/// Whether `arg0` (a path) names a tool: checked before anything else runs.
pub fn is_tool(arg0: &[u8]) -> bool {
    let name = arg0.rsplit(|b| *b == b'/').next().unwrap_or(arg0);
    name == b"cert-approver" || name == b"kubeconfig_generator"
}

pub fn dispatch(argv: &[String]) -> Option<u8> {
    let name = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a))?;
    match name {
        "cert-approver" => Some(crate::k8s::approver::main(argv)),
        "kubeconfig_generator" => Some(crate::k8s::generator::main(argv)),
        _ => None,
    }
}
