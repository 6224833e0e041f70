//! The job's machine, as the test stands it in: an sshd on loopback, started unprivileged on a
//! free high port with its own config, once the machine "boots" — that is, once the provider
//! holds it — with the host key and authorized key the machine got at boot (read back from the
//! fake Hetzner's user data, moto's task environment or moto's instance user data). The executor's ssh reaches it through a
//! wrapper (MAYFLY_SSH) that only changes where ssh connects, never what it checks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";

/// The ssh wrapper's directory: `port` (where sshd listens; none yet: a closed port) and
/// `refuse` (how many more connections to send to a closed port).
pub struct Net {
    pub dir: PathBuf,
    closed: u16,
}

impl Net {
    pub fn new(dir: &Path) -> Net {
        std::fs::create_dir_all(dir).unwrap();
        let closed = free_port();
        let wrapper = dir.join("ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n\
                 d='{d}'\n\
                 port=$(cat \"$d/port\" 2>/dev/null || echo {closed})\n\
                 n=$(cat \"$d/refuse\" 2>/dev/null || echo 0)\n\
                 if [ \"$n\" -gt 0 ]; then echo $((n - 1)) > \"$d/refuse\"; port={closed}; fi\n\
                 echo \"$port\" >> \"$d/connections\"\n\
                 exec ssh -o Hostname=127.0.0.1 -o Port=\"$port\" \"$@\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Net {
            dir: dir.to_path_buf(),
            closed,
        }
    }

    pub fn wrapper(&self) -> PathBuf {
        self.dir.join("ssh")
    }

    /// Connections the executor opened, and how many went to the closed port.
    pub fn connections(&self) -> (usize, usize) {
        let text = std::fs::read_to_string(self.dir.join("connections")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let closed = self.closed.to_string();
        (all.len(), all.iter().filter(|p| **p == closed).count())
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running sshd; killed on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The keys a machine booted with.
#[derive(Clone, Debug)]
pub struct BootKeys {
    pub host_key: String,
    pub authorized_key: String,
}

impl Sshd {
    pub fn start(dir: &Path, keys: &BootKeys) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        let host = dir.join("host_key");
        std::fs::write(&host, &keys.host_key).unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).unwrap();
        let auth = dir.join("authorized_keys");
        std::fs::write(&auth, format!("{}\n", keys.authorized_key)).unwrap();
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
                 AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 LogLevel ERROR\n",
                host.display(),
                auth.display()
            ),
        )
        .unwrap();
        if rustix::process::geteuid().is_root() {
            // sshd's privilege separation wants its empty directory when it runs as root.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sshd (scripts/test installs openssh-server)");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { child, port }
    }
}

/// The keys in a `#cloud-config` the executor wrote.
pub fn keys_from_cloud_config(user_data: &str) -> BootKeys {
    let docs = yaml_rust2::YamlLoader::load_from_str(user_data).expect("user data is YAML");
    let d = &docs[0];
    BootKeys {
        host_key: d["ssh_keys"]["ed25519_private"]
            .as_str()
            .expect("a host key")
            .to_string(),
        authorized_key: d["users"][0]["ssh_authorized_keys"][0]
            .as_str()
            .expect("an authorized key")
            .to_string(),
    }
}

/// The keys in the environment of the ECS task named `name` (its `Name` tag), as moto's
/// DescribeTasks shows them; `None` while there is no such task.
pub fn keys_from_ecs_task(moto: &str, name: &str) -> Option<BootKeys> {
    use mayfly_provider_aws::wire;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let aws =
            mayfly_provider_aws::AwsSettings::emulator(&format!("http://{moto}"), "us-east-1")
                .connect()
                .await
                .unwrap();
        let ecs = |op: &'static str, body: serde_json::Value| {
            let aws = aws.clone();
            async move {
                aws.json(
                    wire::ECS,
                    &format!("AmazonEC2ContainerServiceV20141113.{op}"),
                    &body,
                )
                .await
                .unwrap_or_else(|e| panic!("{op}: {e}"))
            }
        };
        let arns = ecs("ListTasks", serde_json::json!({"cluster": "ci"})).await["taskArns"].clone();
        if arns.as_array().is_none_or(|a| a.is_empty()) {
            return None;
        }
        let tasks = ecs(
            "DescribeTasks",
            serde_json::json!({"cluster": "ci", "tasks": arns, "include": ["TAGS"]}),
        )
        .await;
        let task = tasks["tasks"].as_array()?.iter().find(|t| {
            t["lastStatus"] != "STOPPED"
                && t["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|kv| kv["key"] == "Name" && kv["value"] == name)
        })?;
        let env: Vec<(String, String)> = task["overrides"]["containerOverrides"]
            .as_array()?
            .iter()
            .flat_map(|c| c["environment"].as_array().cloned().unwrap_or_default())
            .map(|kv| {
                (
                    kv["name"].as_str().unwrap().to_string(),
                    kv["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Some(BootKeys {
            host_key: get("MAYFLY_SSH_HOST_KEY").expect("the host key in the task's environment"),
            authorized_key: get("SSH_PUBLIC_KEY")
                .expect("the client key in the task's environment"),
        })
    })
}

/// The keys in the user data of the live EC2 instance named `name` (its `Name` tag), as moto's
/// DescribeInstanceAttribute gives it; `None` while there is no such instance.
pub fn keys_from_ec2_instance(moto: &str, name: &str) -> Option<BootKeys> {
    use base64::Engine;
    use mayfly_provider_aws::wire;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let aws =
            mayfly_provider_aws::AwsSettings::emulator(&format!("http://{moto}"), "us-east-1")
                .connect()
                .await
                .unwrap();
        let ec2 = |action: &'static str, params: &[(&str, &str)]| {
            let mut p = wire::Params::new();
            for (k, v) in params {
                p.set(*k, v);
            }
            let aws = aws.clone();
            async move {
                aws.query(wire::EC2, "2016-11-15", action, &p)
                    .await
                    .unwrap_or_else(|e| panic!("{action}: {e}"))
            }
        };
        let found = ec2(
            "DescribeInstances",
            &[
                ("Filter.1.Name", "tag:Name"),
                ("Filter.1.Value.1", name),
                ("Filter.2.Name", "instance-state-name"),
                ("Filter.2.Value.1", "pending"),
                ("Filter.2.Value.2", "running"),
            ],
        )
        .await;
        let id = found
            .items("reservationSet")
            .flat_map(|r| r.items("instancesSet"))
            .next()?
            .value("instanceId")?;
        let attr = ec2(
            "DescribeInstanceAttribute",
            &[("InstanceId", &id), ("Attribute", "userData")],
        )
        .await;
        let encoded = attr.value("userData/value")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .expect("user data is base64");
        Some(keys_from_cloud_config(
            &String::from_utf8(decoded).expect("user data is text"),
        ))
    })
}

/// The current user's name: the machine's user in these tests (sshd runs as whoever we are).
pub fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
