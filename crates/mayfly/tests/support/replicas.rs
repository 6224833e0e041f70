//! Replicas of `mayfly run` on one PostgreSQL state, against `mayfly sim serve`: a fresh
//! database (or a cluster of the test's own, to stop and start), replicas started and killed,
//! who leads as each replica's `/readyz` says, and the checks every HA test ends with.

use super::Daemon;
use super::sim::{LINUX_POOL, RunConfig, SimServe, request};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const SECRET: &str = "replica-webhook-secret";

/// The admin URL of the test cluster (`scripts/with-postgres`), or `None` to skip; in CI a
/// missing cluster is a failure, not a skip.
pub fn admin_url() -> Option<String> {
    match std::env::var("MAYFLY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| !v.is_empty()) => {
            panic!("MAYFLY_TEST_POSTGRES_URL is not set but CI is: run under scripts/with-postgres")
        }
        _ => {
            eprintln!(
                "skipped: MAYFLY_TEST_POSTGRES_URL not set (run under scripts/with-postgres)"
            );
            None
        }
    }
}

/// A new database on the cluster of `admin`; its URL.
pub fn database(admin: &str, prefix: &str) -> String {
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::{AssertSqlSafe, Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
    });
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    format!("{base}/{name}")
}

/// One replica: its directory (HOME, config, token file), its process and address.
pub struct Replica {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub daemon: Daemon,
    pub addr: SocketAddr,
}

/// The configuration of a replica against `sim` on `state`, with a short lease.
pub fn config(sim: &SimServe, state: &str, lease: &str, renew: &str) -> String {
    let base = sim.mayfly_config(&RunConfig {
        controller: "ha",
        repos: &["acme/app".to_string()],
        webhook_secret: Some(SECRET),
        registration: "30s",
        poll: "1s",
        poll_backstop: "5s",
        workers: 10,
        pools: LINUX_POOL,
    });
    format!(
        "{}\n[leader]\nlease = \"{lease}\"\nrenew = \"{renew}\"\nnews = \"200ms\"\n",
        base.replace(
            "state_dir = \"state\"",
            &format!("state_dir = \"state\"\nstate = \"{state}\"")
        )
    )
}

impl Replica {
    pub fn start(name: &str, config: &str) -> Replica {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mayfly.toml");
        std::fs::write(&path, config).expect("write the config");
        let mut daemon = Daemon::start_at("info", dir.path(), &path, &[]);
        let addr = daemon
            .listen_addr()
            .unwrap_or_else(|| panic!("replica {name} did not start:\n{}", daemon.log()));
        Replica {
            name: name.to_string(),
            dir,
            daemon,
            addr,
        }
    }

    /// `/readyz` as JSON (status, body); `None` when the replica does not answer.
    pub fn readyz(&self) -> Option<(u16, Value)> {
        let addr = self.addr.to_string();
        // A stopped or dead replica must not hang the caller.
        let conn = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(300));
        conn.ok()?;
        let (status, body) =
            std::panic::catch_unwind(|| request(&addr, "GET", "/readyz", None)).ok()?;
        Some((status, serde_json::from_str(&body).ok()?))
    }

    /// Whether this replica says it leads.
    pub fn leads(&self) -> bool {
        self.readyz()
            .is_some_and(|(_, b)| b["leader"]["leading"] == Value::Bool(true))
    }

    /// Registers this replica's webhook endpoint with the fake GitHub.
    pub fn receive_webhooks(&self, sim: &SimServe) {
        sim.post(
            "webhooks",
            &serde_json::json!({
                "url": format!("http://{}/webhooks/github", self.addr),
                "secret": SECRET,
            }),
        );
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.daemon.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {}", self.daemon.pid());
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The index of the one replica that leads, waiting at most `within`; panics if two say so
/// at once.
pub fn leader(replicas: &[Replica], within: Duration) -> usize {
    let start = Instant::now();
    loop {
        let leading: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].leads())
            .collect();
        match leading.as_slice() {
            [one] => return *one,
            [] => {}
            many => panic!("replicas {many:?} lead at once"),
        }
        assert!(
            start.elapsed() < within,
            "no replica leads after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every job of the fake GitHub is completed; panics after `within`.
pub fn all_served(sim: &SimServe, jobs: usize, within: Duration, mut why: impl FnMut() -> String) {
    let start = Instant::now();
    loop {
        let all = sim.jobs();
        let done = all.iter().filter(|j| j["status"] == "completed").count();
        if all.len() == jobs && done == jobs {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{done} of {jobs} jobs served after {within:?}:\n{}",
            why()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every server the fake Hetzner ever made, by name.
pub fn servers_ever(sim: &SimServe) -> Vec<String> {
    sim.servers()["billing"]["servers"]
        .as_array()
        .expect("billing.servers")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// One server per job, each job run by a runner of its own, and (within `within`) no server
/// left and no runner registered.
pub fn one_machine_per_job_and_nothing_left(sim: &SimServe, jobs: usize, within: Duration) {
    let ever = servers_ever(sim);
    let mut names = ever.clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), ever.len(), "a name was made twice: {ever:?}");
    assert_eq!(
        ever.len(),
        jobs,
        "servers ever made for {jobs} jobs: {ever:?}"
    );
    let mut runners: Vec<String> = sim
        .jobs()
        .iter()
        .map(|j| j["runner_name"].as_str().unwrap_or_default().to_string())
        .collect();
    runners.sort();
    runners.dedup();
    assert_eq!(runners.len(), jobs, "a runner ran two jobs: {runners:?}");
    let start = Instant::now();
    loop {
        let left = sim.servers()["servers"].as_array().map_or(0, |s| s.len());
        let registered = sim.github_get("/repos/acme/app/actions/runners")["total_count"]
            .as_u64()
            .unwrap_or(0);
        if left == 0 && registered == 0 {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{left} servers and {registered} runners left after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A PostgreSQL cluster of the test's own (its data in a temporary directory), which the test
/// may stop and start: the shared cluster of `scripts/with-postgres` serves other tests too.
/// Needs the server binaries (`PG_BIN`, or the newest under /usr/lib/postgresql); as root they
/// run as the `postgres` user, as `scripts/with-postgres` does. Stopped on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Cluster {
    pub fn bin() -> Option<PathBuf> {
        if let Ok(bin) = std::env::var("PG_BIN")
            && Path::new(&bin).join("initdb").exists()
        {
            return Some(bin.into());
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        found.sort();
        found.pop()
    }

    fn as_pg(&self, tool: &str) -> Command {
        let root = rustix::process::geteuid().is_root();
        let mut cmd = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    }

    pub fn start() -> Cluster {
        let bin = Cluster::bin().expect("PostgreSQL's server binaries (set PG_BIN)");
        let dir = tempfile::Builder::new()
            .prefix("mayfly-pg-own")
            .tempdir()
            .unwrap();
        if rustix::process::geteuid().is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster { bin, dir, port };
        let data = cluster.data();
        let ok = cluster
            .as_pg("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg("-D")
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "initdb");
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            cluster.dir.path().display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        cluster.up();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn up(&self) {
        let ok = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "start"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pg_ctl start");
    }

    /// Stops the server at once (`-m immediate`: connections are cut as in a crash).
    pub fn down(&self) {
        let ok = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pg_ctl stop");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .status();
    }
}
