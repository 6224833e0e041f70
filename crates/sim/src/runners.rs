//! Virtual runners: when a fake machine is running, a runner finds its single-use credential in
//! the machine's user data, registers with the fake forge (GitHub's JIT config, or GitLab's
//! `gitlab-runner run-single` command line), takes one job, runs it, powers off.
//!
//! Machines are seen through [`MachineSource`], so the same runners can later watch instances
//! in another cloud emulator (moto) the same way.

use crate::clock::Clock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running machine as a virtual runner sees it from inside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// The cloud's id of the machine.
    pub id: String,
    pub name: String,
    /// The user data (cloud-init) the machine was created with.
    pub user_data: String,
    /// Counts the machine's boots: a machine powered on again after a job is a new boot, and
    /// its runner starts afresh.
    pub boot: u64,
}

/// A cloud whose machines virtual runners live on.
pub trait MachineSource: Send + Sync {
    /// The machines that are up (booted and running) now.
    fn running(&self) -> Vec<Machine>;
    /// The machine's own OS powers it off, as `poweroff` does after the runner exits.
    fn power_off(&self, id: &str);
    /// Whether machine `id` is still up in boot `boot`. Every runner asks this about its own
    /// machine each simulated second, so a cloud should answer without listing (and copying the
    /// user data of) every machine: with hundreds of runners that listing dominated the CPU.
    fn is_up(&self, id: &str, boot: u64) -> bool {
        self.running().iter().any(|m| m.id == id && m.boot == boot)
    }
    /// Whether this cloud's runners are long-lived (an autoscaling group's, registered at boot):
    /// they take job after job until their machine goes away, instead of one job and poweroff.
    fn long_lived(&self) -> bool {
        false
    }
    /// Whether machine `id` is marked draining: its long-lived runner takes no new job.
    fn draining(&self, _id: &str) -> bool {
        false
    }
}

/// A forge that hands jobs to virtual runners (the fake GitHub, in-process).
pub trait JobSource: Send + Sync {
    /// Registers a runner from a credential found in `user_data`; returns the runner's id.
    fn redeem(&self, user_data: &str, hostname: &str) -> Result<u64, String>;
    /// The job the forge assigns this runner now, if any: its id and how long it runs.
    fn next_job(&self, runner: u64) -> Option<(u64, Duration)>;
    fn finish_job(&self, runner: u64, job: u64, conclusion: &str);
    /// The runner vanished (crash, or its machine was deleted under it).
    fn runner_lost(&self, runner: u64);
    /// How long the runner waits for its job before it gives up, exits and its machine powers
    /// off (`gitlab-runner run-single --wait-timeout`); `None`: until the machine goes away.
    fn wait_timeout(&self, _runner: u64) -> Option<Duration> {
        None
    }
}

/// A delay drawn per runner, in simulated time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delay {
    Fixed { secs: f64 },
    Uniform { min_secs: f64, max_secs: f64 },
}

impl Delay {
    /// The delay on average: what a model that draws nothing (`mayfly estimate`) takes.
    pub fn mean(&self) -> Duration {
        let secs = match *self {
            Delay::Fixed { secs } => secs,
            Delay::Uniform { min_secs, max_secs } => (min_secs + max_secs.max(min_secs)) / 2.0,
        };
        Duration::from_secs_f64(if secs.is_finite() { secs.max(0.0) } else { 0.0 })
    }

    fn draw(&self, rng: &mut impl Rng) -> Duration {
        let secs = match *self {
            Delay::Fixed { secs } => secs,
            Delay::Uniform { min_secs, max_secs } if max_secs > min_secs => {
                rng.random_range(min_secs..max_secs)
            }
            Delay::Uniform { min_secs, .. } => min_secs,
        };
        Duration::from_secs_f64(secs.max(0.0))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerConfig {
    /// From the machine reaching running until its runner registers (the OS boot and
    /// cloud-init, in simulated time).
    pub boot_delay: Delay,
    /// Share (0..=1) of machines whose runner never registers: zombies mayfly must clean up.
    pub never_register: f64,
    /// Share (0..=1) of runners that crash in the middle of their job.
    pub crash: f64,
    /// How often an idle runner asks for a job, in simulated seconds.
    pub poll_secs: f64,
    /// Seed of the random draws, so a run can be repeated.
    pub seed: u64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            boot_delay: Delay::Uniform {
                min_secs: 20.0,
                max_secs: 40.0,
            },
            never_register: 0.0,
            crash: 0.0,
            poll_secs: 1.0,
            seed: 1,
        }
    }
}

/// What the virtual runners did, for the control API's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunnerStats {
    /// Machine boots a runner started on.
    pub boots: u64,
    pub registered: u64,
    /// Boots whose runner was told never to register (fault knob).
    pub never_registered: u64,
    /// Boots whose user data held no usable credential (the machine powers off).
    pub rejected: u64,
    pub jobs_completed: u64,
    pub crashed: u64,
    /// Runners whose machine disappeared under them.
    pub lost: u64,
    /// Long-lived runners whose machine went away while they were idle (scaled in).
    pub retired: u64,
    /// Runners that got no job within their wait timeout and exited (the machine powers off).
    pub timed_out: u64,
}

/// The runners living on a cloud's machines. Dropping it stops them.
pub struct VirtualRunners {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    machines: Arc<dyn MachineSource>,
    jobs: Arc<dyn JobSource>,
    clock: Clock,
    config: Mutex<RunnerConfig>,
    rng: Mutex<StdRng>,
    stats: Mutex<RunnerStats>,
}

impl VirtualRunners {
    pub fn start(
        machines: Arc<dyn MachineSource>,
        jobs: Arc<dyn JobSource>,
        clock: Clock,
        config: RunnerConfig,
    ) -> VirtualRunners {
        let rng = StdRng::seed_from_u64(config.seed);
        let shared = Arc::new(Shared {
            machines,
            jobs,
            clock,
            config: Mutex::new(config),
            rng: Mutex::new(rng),
            stats: Mutex::new(RunnerStats::default()),
        });
        let task = tokio::spawn(watch(shared.clone()));
        VirtualRunners { shared, task }
    }

    pub fn stats(&self) -> RunnerStats {
        lock(&self.shared.stats).clone()
    }

    pub fn config(&self) -> RunnerConfig {
        lock(&self.shared.config).clone()
    }

    /// Changes the knobs for runners that start from now on.
    pub fn set_config(&self, config: RunnerConfig) {
        *lock(&self.shared.rng) = StdRng::seed_from_u64(config.seed);
        *lock(&self.shared.config) = config;
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = RunnerStats::default();
    }
}

impl Drop for VirtualRunners {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Watches for machine boots and starts one runner on each.
async fn watch(shared: Arc<Shared>) {
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut runners = tokio::task::JoinSet::new();
    loop {
        let up = shared.machines.running();
        // Forget boots of machines that are gone, so the set stays small.
        let alive: HashSet<&str> = up.iter().map(|m| m.id.as_str()).collect();
        seen.retain(|(id, _)| alive.contains(id.as_str()));
        for m in up {
            if seen.insert((m.id.clone(), m.boot)) {
                lock(&shared.stats).boots += 1;
                runners.spawn(run_one(shared.clone(), m));
            }
        }
        while runners.try_join_next().is_some() {}
        tokio::time::sleep(tick(&shared.clock)).await;
    }
}

/// How often to look at the cloud: a simulated second, but at least every 5 ms of real time.
fn tick(clock: &Clock) -> Duration {
    clock
        .real(Duration::from_secs(1))
        .clamp(Duration::from_millis(5), Duration::from_secs(1))
}

fn still_up(shared: &Shared, m: &Machine) -> bool {
    shared.machines.is_up(&m.id, m.boot)
}

/// Sleeps a simulated duration in ticks; false if the machine went away meanwhile.
async fn live_for(shared: &Shared, m: &Machine, d: Duration) -> bool {
    let until = tokio::time::Instant::now() + shared.clock.real(d);
    loop {
        let now = tokio::time::Instant::now();
        if now >= until {
            return still_up(shared, m);
        }
        tokio::time::sleep((until - now).min(tick(&shared.clock))).await;
        if !still_up(shared, m) {
            return false;
        }
    }
}

/// One runner's life on one boot of a machine, as the real runner started with `--jitconfig`
/// followed by `poweroff`.
async fn run_one(shared: Arc<Shared>, m: Machine) {
    let (boot, never, crash_roll, poll) = {
        let cfg = lock(&shared.config).clone();
        let mut rng = lock(&shared.rng);
        let boot = cfg.boot_delay.draw(&mut *rng);
        let never = rng.random_bool(cfg.never_register.clamp(0.0, 1.0));
        let crash = rng
            .random_bool(cfg.crash.clamp(0.0, 1.0))
            .then(|| rng.random_range(0.1..0.9));
        (
            boot,
            never,
            crash,
            Duration::from_secs_f64(cfg.poll_secs.max(0.01)),
        )
    };
    if !live_for(&shared, &m, boot).await {
        return;
    }
    if never {
        lock(&shared.stats).never_registered += 1;
        return;
    }
    let runner = match shared.jobs.redeem(&m.user_data, &m.name) {
        Ok(id) => id,
        Err(e) => {
            tracing::debug!(machine = %m.name, error = %e, "runner could not register; powering off");
            lock(&shared.stats).rejected += 1;
            shared.machines.power_off(&m.id);
            return;
        }
    };
    lock(&shared.stats).registered += 1;
    if shared.machines.long_lived() {
        serve_jobs(&shared, &m, runner, poll).await;
        return;
    }
    let give_up = shared
        .jobs
        .wait_timeout(runner)
        .map(|t| tokio::time::Instant::now() + shared.clock.real(t));
    let (job, duration) = loop {
        if let Some(assigned) = shared.jobs.next_job(runner) {
            break assigned;
        }
        if give_up.is_some_and(|g| tokio::time::Instant::now() >= g) {
            shared.jobs.runner_lost(runner);
            lock(&shared.stats).timed_out += 1;
            shared.machines.power_off(&m.id);
            return;
        }
        if !live_for(&shared, &m, poll).await {
            shared.jobs.runner_lost(runner);
            lock(&shared.stats).lost += 1;
            return;
        }
    };
    if let Some(share) = crash_roll {
        let alive = live_for(&shared, &m, duration.mul_f64(share)).await;
        shared.jobs.runner_lost(runner);
        lock(&shared.stats).crashed += 1;
        if alive {
            shared.machines.power_off(&m.id);
        }
        return;
    }
    if !live_for(&shared, &m, duration).await {
        shared.jobs.runner_lost(runner);
        lock(&shared.stats).lost += 1;
        return;
    }
    shared.jobs.finish_job(runner, job, "success");
    lock(&shared.stats).jobs_completed += 1;
    shared.machines.power_off(&m.id);
}

/// A long-lived runner's life (`run.sh` of a runner registered without `--ephemeral`): job
/// after job while its machine is up, none once the machine is marked draining.
async fn serve_jobs(shared: &Shared, m: &Machine, runner: u64, poll: Duration) {
    loop {
        let assigned = if shared.machines.draining(&m.id) {
            None
        } else {
            shared.jobs.next_job(runner)
        };
        let Some((job, duration)) = assigned else {
            if !live_for(shared, m, poll).await {
                shared.jobs.runner_lost(runner);
                lock(&shared.stats).retired += 1;
                return;
            }
            continue;
        };
        if !live_for(shared, m, duration).await {
            shared.jobs.runner_lost(runner);
            lock(&shared.stats).lost += 1;
            return;
        }
        shared.jobs.finish_job(runner, job, "success");
        lock(&shared.stats).jobs_completed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Cloud {
        machines: Mutex<Vec<Machine>>,
        powered_off: Mutex<Vec<String>>,
    }

    impl MachineSource for Cloud {
        fn running(&self) -> Vec<Machine> {
            lock(&self.machines).clone()
        }
        fn power_off(&self, id: &str) {
            lock(&self.machines).retain(|m| m.id != id);
            lock(&self.powered_off).push(id.to_string());
        }
    }

    /// A forge with one queued job of 60 s; the credential is the word "good".
    #[derive(Default)]
    struct Forge {
        events: Mutex<Vec<String>>,
    }

    impl JobSource for Forge {
        fn redeem(&self, user_data: &str, hostname: &str) -> Result<u64, String> {
            lock(&self.events).push(format!("redeem {hostname}"));
            if user_data.contains("good") {
                Ok(7)
            } else {
                Err("no credential".into())
            }
        }
        fn next_job(&self, runner: u64) -> Option<(u64, Duration)> {
            let mut ev = lock(&self.events);
            if ev.iter().any(|e| e.starts_with("assign")) {
                return None;
            }
            ev.push(format!("assign {runner}"));
            Some((42, Duration::from_secs(60)))
        }
        fn finish_job(&self, runner: u64, job: u64, conclusion: &str) {
            lock(&self.events).push(format!("finish {runner} {job} {conclusion}"));
        }
        fn runner_lost(&self, runner: u64) {
            lock(&self.events).push(format!("lost {runner}"));
        }
    }

    fn machine(user_data: &str) -> Machine {
        Machine {
            id: "1".into(),
            name: "m1".into(),
            user_data: user_data.into(),
            boot: 1,
        }
    }

    fn start(config: RunnerConfig, user_data: &str) -> (Arc<Cloud>, Arc<Forge>, VirtualRunners) {
        let cloud = Arc::new(Cloud::default());
        lock(&cloud.machines).push(machine(user_data));
        let forge = Arc::new(Forge::default());
        let config = RunnerConfig {
            boot_delay: Delay::Fixed { secs: 30.0 },
            ..config
        };
        let runners =
            VirtualRunners::start(cloud.clone(), forge.clone(), Clock::new(1000.0), config);
        (cloud, forge, runners)
    }

    /// Waits (bounded) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_runner_registers_takes_its_job_finishes_and_powers_off() {
        let (cloud, forge, runners) = start(RunnerConfig::default(), "run.sh --jitconfig good");
        until("power off", || !lock(&cloud.powered_off).is_empty()).await;
        assert_eq!(
            *lock(&forge.events),
            ["redeem m1", "assign 7", "finish 7 42 success"]
        );
        let s = runners.stats();
        assert_eq!((s.boots, s.registered, s.jobs_completed), (1, 1, 1));
    }

    #[tokio::test]
    async fn without_a_credential_the_machine_powers_off() {
        let (cloud, _forge, runners) = start(RunnerConfig::default(), "nothing here");
        until("power off", || !lock(&cloud.powered_off).is_empty()).await;
        assert_eq!(runners.stats().rejected, 1);
    }

    #[tokio::test]
    async fn a_runner_told_never_to_register_leaves_a_zombie() {
        let config = RunnerConfig {
            never_register: 1.0,
            ..RunnerConfig::default()
        };
        let (cloud, forge, runners) = start(config, "good");
        until("the boot to pass", || runners.stats().never_registered == 1).await;
        assert!(lock(&forge.events).is_empty());
        assert_eq!(lock(&cloud.machines).len(), 1, "the machine stays up");
    }

    #[tokio::test]
    async fn a_crashing_runner_loses_its_job() {
        let config = RunnerConfig {
            crash: 1.0,
            ..RunnerConfig::default()
        };
        let (cloud, forge, runners) = start(config, "good");
        until("power off", || !lock(&cloud.powered_off).is_empty()).await;
        assert_eq!(
            lock(&forge.events).last().map(String::as_str),
            Some("lost 7")
        );
        assert_eq!(runners.stats().crashed, 1);
    }

    /// An autoscaling group's machine: long-lived runners, drained by a flag.
    #[derive(Default)]
    struct Group {
        cloud: Cloud,
        draining: std::sync::atomic::AtomicBool,
    }

    impl MachineSource for Group {
        fn running(&self) -> Vec<Machine> {
            self.cloud.running()
        }
        fn power_off(&self, id: &str) {
            self.cloud.power_off(id);
        }
        fn long_lived(&self) -> bool {
            true
        }
        fn draining(&self, _id: &str) -> bool {
            self.draining.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// A forge with a queue of 60 s jobs for one long-lived runner.
    #[derive(Default)]
    struct Queue {
        queued: Mutex<Vec<u64>>,
        events: Mutex<Vec<String>>,
    }

    impl JobSource for Queue {
        fn redeem(&self, _user_data: &str, hostname: &str) -> Result<u64, String> {
            lock(&self.events).push(format!("redeem {hostname}"));
            Ok(7)
        }
        fn next_job(&self, _runner: u64) -> Option<(u64, Duration)> {
            let job = lock(&self.queued).pop()?;
            Some((job, Duration::from_secs(60)))
        }
        fn finish_job(&self, _runner: u64, job: u64, _conclusion: &str) {
            lock(&self.events).push(format!("finish {job}"));
        }
        fn runner_lost(&self, runner: u64) {
            lock(&self.events).push(format!("lost {runner}"));
        }
    }

    #[tokio::test]
    async fn a_long_lived_runner_serves_jobs_until_drained_and_retired() {
        let group = Arc::new(Group::default());
        lock(&group.cloud.machines).push(machine("token"));
        let forge = Arc::new(Queue::default());
        *lock(&forge.queued) = vec![2, 1];
        let config = RunnerConfig {
            boot_delay: Delay::Fixed { secs: 1.0 },
            ..RunnerConfig::default()
        };
        let runners =
            VirtualRunners::start(group.clone(), forge.clone(), Clock::new(1000.0), config);
        until("both jobs", || runners.stats().jobs_completed == 2).await;
        assert_eq!(*lock(&forge.events), ["redeem m1", "finish 1", "finish 2"]);
        assert!(lock(&group.cloud.powered_off).is_empty(), "it stays up");

        group
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        lock(&forge.queued).push(3);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*lock(&forge.queued), [3], "a draining runner takes no job");

        lock(&group.cloud.machines).clear();
        until("the runner to go", || runners.stats().retired == 1).await;
        assert_eq!(
            lock(&forge.events).last().map(String::as_str),
            Some("lost 7")
        );
        assert_eq!(runners.stats().lost, 0);
    }

    /// A forge whose runner waits 60 s for a job that never comes.
    #[derive(Default)]
    struct Idle {
        events: Mutex<Vec<String>>,
    }

    impl JobSource for Idle {
        fn redeem(&self, _user_data: &str, _hostname: &str) -> Result<u64, String> {
            Ok(9)
        }
        fn next_job(&self, _runner: u64) -> Option<(u64, Duration)> {
            None
        }
        fn finish_job(&self, _runner: u64, _job: u64, _conclusion: &str) {}
        fn runner_lost(&self, runner: u64) {
            lock(&self.events).push(format!("lost {runner}"));
        }
        fn wait_timeout(&self, _runner: u64) -> Option<Duration> {
            Some(Duration::from_secs(60))
        }
    }

    #[tokio::test]
    async fn a_runner_without_a_job_gives_up_at_its_wait_timeout() {
        let cloud = Arc::new(Cloud::default());
        lock(&cloud.machines).push(machine("run-single"));
        let forge = Arc::new(Idle::default());
        let config = RunnerConfig {
            boot_delay: Delay::Fixed { secs: 1.0 },
            ..RunnerConfig::default()
        };
        let runners =
            VirtualRunners::start(cloud.clone(), forge.clone(), Clock::new(1000.0), config);
        until("power off", || !lock(&cloud.powered_off).is_empty()).await;
        assert_eq!(runners.stats().timed_out, 1);
        assert_eq!(*lock(&forge.events), ["lost 9"]);
    }

    #[tokio::test]
    async fn a_machine_deleted_mid_job_loses_the_runner() {
        let (cloud, forge, _runners) = start(RunnerConfig::default(), "good");
        until("the job to start", || {
            lock(&forge.events).iter().any(|e| e.starts_with("assign"))
        })
        .await;
        lock(&cloud.machines).clear();
        until("the runner to be lost", || {
            lock(&forge.events).iter().any(|e| e == "lost 7")
        })
        .await;
        assert!(!lock(&forge.events).iter().any(|e| e.starts_with("finish")));
    }
}
