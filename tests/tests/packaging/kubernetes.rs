//! packaging/kubernetes/daemonset.yaml: valid against the Kubernetes schemas, and consistent
//! with the daemon: its ConfigMap is a config the daemon accepts, and the DaemonSet mounts,
//! probes and grants what that config and the systemd unit say.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

use dnsxdp::config::{Config, Settings};
use serde_json::Value;

use super::{container::entrypoint, run, unit_capabilities, version};

const MANIFEST: &str = "packaging/kubernetes/daemonset.yaml";
const LISTEN: &str = "169.254.20.10:53";

/// The venv `cargo xtask setup` installs kubernetes-validate in.
fn venv() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    target.join("tools/venv/bin")
}

/// The manifest's documents as JSON, read by PyYAML (which kubernetes-validate uses).
fn documents() -> Vec<Value> {
    let python = venv().join("python");
    let json = run(Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)",
        ])
        .stdin(std::fs::File::open(super::workspace().join(MANIFEST)).unwrap()))
    .unwrap_or_else(|e| panic!("{e:#}\n(cargo xtask setup installs {})", python.display()));
    serde_json::from_str(&json).unwrap()
}

fn document(kind: &str) -> Value {
    documents()
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {MANIFEST}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    // The oldest and newest schemas it ships; strict: unknown fields are errors.
    for version in ["1.25.0", "1.34.0"] {
        let validator = venv().join("kubernetes-validate");
        run(Command::new(&validator)
            .args(["--strict", "--no-warn", "--kubernetes-version", version])
            .arg(super::workspace().join(MANIFEST)))
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\n(cargo xtask setup installs {})",
                validator.display()
            )
        });
    }
}

#[test]
fn the_daemonset_runs_its_configmap_as_the_unit_runs_the_daemon() {
    let config_map = document("ConfigMap");
    let daemon_set = document("DaemonSet");
    let pod = &daemon_set["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "Default", "not itself as its resolver");
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"]
            .as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .1,
        version(),
        "the image of this version"
    );
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    // The mount (and its volume) that holds `path`.
    let mount_of = |path: &Path| {
        let mounts = container["volumeMounts"].as_array().unwrap();
        let mount = mounts
            .iter()
            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()));
        (mount, volume(mount["name"].as_str().unwrap()))
    };

    // It runs the config the ConfigMap holds, which the daemon accepts.
    let args = strings(&container["args"]);
    let [run, "--config", file] = args[..] else {
        panic!("args {args:?}")
    };
    assert_eq!(run, "run");
    let file = Path::new(file);
    let (mount, config_volume) = mount_of(file);
    assert_eq!(
        config_volume["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    let key = file
        .strip_prefix(mount["mountPath"].as_str().unwrap())
        .unwrap();
    let text = config_map["data"][key.to_str().unwrap()]
        .as_str()
        .unwrap_or_else(|| panic!("no {} in the ConfigMap", key.display()));
    let no_resolv_conf = || Err(io::Error::other("unused: upstream is given"));
    let config = Config::resolve(Settings::from_toml(text).unwrap(), &[], no_resolv_conf).unwrap();
    assert!(
        config
            .serve
            .listen
            .contains(&LISTEN.parse::<SocketAddr>().unwrap())
    );

    // The address is put on the node before the daemon binds it.
    let init = strings(&pod["initContainers"][0]["command"]).join(" ");
    assert!(init.contains("169.254.20.10/32"), "{init}");

    // Pins go to the node's bpffs, so that the cache and link outlive the pod.
    let (bpffs, bpffs_volume) = mount_of(&config.kernel.pin_dir);
    assert_eq!(bpffs["mountPath"], "/sys/fs/bpf");
    assert_eq!(bpffs_volume["hostPath"]["path"], "/sys/fs/bpf");
    assert_eq!(bpffs_volume["hostPath"]["type"], "Directory");

    // The liveness probe asks the daemon on its control socket, which is in a writable volume.
    let probe = strings(&container["livenessProbe"]["exec"]["command"]);
    assert_eq!(
        probe,
        [
            &entrypoint(),
            "stats",
            "--control",
            config.ops.control.to_str().unwrap()
        ],
        "not the image's binary asking the config's control socket"
    );
    let (_, run_volume) = mount_of(&config.ops.control);
    assert!(run_volume.get("emptyDir").is_some(), "{run_volume}");
    let ready = &container["readinessProbe"]["tcpSocket"];
    let ready: SocketAddr = format!("{}:{}", ready["host"].as_str().unwrap(), ready["port"])
        .parse()
        .unwrap();
    assert!(config.serve.listen.contains(&ready));

    // The unit's capabilities, and nothing else.
    let security = &container["securityContext"];
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    let mut added: Vec<String> = strings(&security["capabilities"]["add"])
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    added.sort();
    let mut unit = unit_capabilities();
    unit.sort();
    assert_eq!(added, unit);
    assert_eq!(security.get("privileged"), None);
    assert_eq!(security["allowPrivilegeEscalation"], false);
}
