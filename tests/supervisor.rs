//! The embedded supervisor against real PocketBase processes (and a few tiny
//! misbehaving shell scripts for the failure paths): process groups and
//! limits, restarts after kill -9, crash loops, graceful and forced stops,
//! adoption by a new supervisor, many instances at once, log rotation.
//!
//! Every test kills what it started when it ends, passed or failed: a
//! [`Fixture`] kills every process whose working directory lies in its
//! temporary directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};
use pockestrator::model::InstanceName;
use pockestrator::runtime::embedded::Supervisor;
use pockestrator::runtime::{
    AnyRuntime, LaunchSpec, Phase, Runtime, RuntimeError, RuntimeEvent, SupervisorConfig,
};
use tokio::sync::broadcast;

use crate::support::{free_port, pocketbase_bin, wait_until, PB_NEW, PB_OLD};

/// How long anything in these tests may take before it counts as broken.
const LIMIT: Duration = Duration::from_secs(30);

/// A temporary directory for instances, and the guarantee that no process
/// running in it survives the test.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spec(&self, name: &str, binary: PathBuf) -> LaunchSpec {
        LaunchSpec {
            name: InstanceName::parse(name).expect("valid test name"),
            binary,
            instance_dir: self.path().join("instances").join(name),
            port: free_port(),
            limits: Default::default(),
            release: None,
            release_binary: false,
        }
    }

    fn pocketbase(&self, name: &str) -> LaunchSpec {
        self.spec(name, pocketbase_bin(PB_NEW))
    }

    /// A shell script used as the instance binary (it ignores the
    /// PocketBase arguments it is given).
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path().join(format!("{name}.sh"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write fixture script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make fixture script executable");
        path
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        kill_everything_under(self.dir.path());
    }
}

/// Kill (with their process groups) all processes whose working directory
/// is under `root`.
fn kill_everything_under(root: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let own_group = getpgid(None).ok();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if !cwd.starts_with(root) {
            continue;
        }
        let pid = Pid::from_raw(pid);
        if let Ok(group) = getpgid(Some(pid)) {
            if Some(group) != own_group {
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
}

fn supervisor() -> Supervisor {
    Supervisor::new(SupervisorConfig::default())
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Field 22 of `/proc/PID/stat`.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat has a command name");
    rest.split_whitespace()
        .nth(22 - 3)
        .and_then(|v| v.parse().ok())
        .expect("stat has a start time")
}

async fn healthy(port: u16) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(format!("http://127.0.0.1:{port}/api/health"))
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

async fn wait_healthy(port: u16) {
    wait_until(
        LIMIT,
        &format!("PocketBase on port {port} to be healthy"),
        || async move { healthy(port).await.then_some(()) },
    )
    .await
}

async fn wait_dead(pid: u32) {
    wait_until(LIMIT, &format!("pid {pid} to be gone"), || async move {
        (!alive(pid)).then_some(())
    })
    .await
}

/// The next event that matches, skipping others.
async fn next_event(
    events: &mut broadcast::Receiver<RuntimeEvent>,
    what: &str,
    matches: impl Fn(&RuntimeEvent) -> bool,
) -> RuntimeEvent {
    let waiting = async {
        loop {
            match events.recv().await {
                Ok(event) if matches(&event) => return event,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
            }
        }
    };
    tokio::time::timeout(LIMIT, waiting)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Start, retrying while the kernel still calls a just-written script busy
/// (another test thread may be forking with its descriptor open).
async fn start_fixture(runtime: &impl Runtime, spec: &LaunchSpec) -> u32 {
    for _ in 0..50 {
        match runtime.start(spec.clone()).await {
            Ok(pid) => return pid,
            Err(RuntimeError::Spawn { source, .. })
                if source.raw_os_error() == Some(nix::libc::ETXTBSY) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot start fixture {}: {e:?}", spec.name),
        }
    }
    panic!("fixture {} stayed busy", spec.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_pocketbase_in_its_own_process_group_with_the_nofile_limit() {
    let fx = Fixture::new();
    let sup = supervisor();
    let spec = fx.pocketbase("alpha");

    let pid = sup.start(spec.clone()).await.expect("start PocketBase");
    wait_healthy(spec.port).await;

    let group = getpgid(Some(Pid::from_raw(pid as i32))).expect("getpgid");
    assert_eq!(
        group.as_raw(),
        pid as i32,
        "the instance leads its own process group"
    );

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let nofile: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line")
        .split_whitespace()
        .collect();
    assert_eq!(nofile[3..5], ["4096", "4096"], "{limits}");

    let log = std::fs::read_to_string(spec.log_file()).expect("the log file exists");
    assert!(log.contains(&format!("started pid {pid}")), "{log}");

    let pidfile = std::fs::read_to_string(spec.pid_file()).expect("the pidfile exists");
    assert_eq!(pidfile, format!("{pid} {}\n", start_time(pid)));

    let seen = sup.observe(&spec.name).expect("observed");
    assert_eq!(
        (seen.pid, seen.phase, seen.restarts),
        (Some(pid), Phase::Running, 0)
    );

    assert!(matches!(
        sup.start(spec.clone()).await,
        Err(RuntimeError::AlreadyRunning(_))
    ));

    sup.stop(&spec.name).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_restarted_at_once() {
    let fx = Fixture::new();
    let sup = AnyRuntime::Embedded(supervisor());
    let mut events = sup.subscribe();
    let spec = fx.pocketbase("beta");

    let pid = sup.start(spec.clone()).await.expect("start PocketBase");
    wait_healthy(spec.port).await;

    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");

    let exited = next_event(&mut events, "the exit", |e| {
        matches!(e, RuntimeEvent::Exited { .. })
    })
    .await;
    let RuntimeEvent::Exited {
        pid: exited_pid,
        signal,
        expected,
        ..
    } = exited
    else {
        unreachable!()
    };
    assert_eq!((exited_pid, signal, expected), (pid, Some(9), false));

    let scheduled = next_event(&mut events, "the restart to be scheduled", |e| {
        matches!(e, RuntimeEvent::RestartScheduled { .. })
    })
    .await;
    assert!(
        matches!(
            scheduled,
            RuntimeEvent::RestartScheduled {
                attempt: 1,
                delay_ms: 0,
                ..
            }
        ),
        "{scheduled:?}"
    );

    let spawned = next_event(&mut events, "the new process", |e| {
        matches!(e, RuntimeEvent::Spawned { .. })
    })
    .await;
    let RuntimeEvent::Spawned { pid: new_pid, .. } = spawned else {
        unreachable!()
    };
    assert_ne!(new_pid, pid);
    wait_healthy(spec.port).await;

    let seen = sup.observe(&spec.name).expect("observed");
    assert_eq!(
        (seen.pid, seen.phase, seen.restarts),
        (Some(new_pid), Phase::Running, 1)
    );
    let log = std::fs::read_to_string(spec.log_file()).expect("log");
    assert!(
        log.contains(&format!("pid {pid} exited unexpectedly (signal SIGKILL)")),
        "{log}"
    );
    assert!(
        log.contains(&format!("restarted: pid {new_pid} (restart 1)")),
        "{log}"
    );

    sup.stop(&spec.name).await.expect("stop");
}

#[tokio::test]
async fn a_crash_loop_gives_up_until_the_next_start() {
    let fx = Fixture::new();
    let sup = supervisor();
    let mut events = sup.subscribe();
    let spec = fx.spec("crashy", fx.script("crashy", "exit 1"));

    start_fixture(&sup, &spec).await;
    let gave_up = next_event(&mut events, "the crash loop", |e| {
        matches!(e, RuntimeEvent::CrashLoop { .. })
    })
    .await;
    assert!(
        matches!(gave_up, RuntimeEvent::CrashLoop { crashes: 5, .. }),
        "{gave_up:?}"
    );

    let seen = sup.observe(&spec.name).expect("observed");
    assert_eq!(
        (seen.pid, seen.phase, seen.restarts),
        (None, Phase::CrashLoop, 4)
    );
    assert!(!spec.pid_file().exists(), "a crash loop leaves no pidfile");
    let log = std::fs::read_to_string(spec.log_file()).expect("log");
    assert!(log.contains("exited unexpectedly (exit code 1)"), "{log}");
    assert!(
        log.contains("crashed 5 times within 60s: not restarting until the next start"),
        "{log}"
    );

    // An explicit start tries again, from a clean slate.
    start_fixture(&sup, &spec).await;
    next_event(&mut events, "the second crash loop", |e| {
        matches!(e, RuntimeEvent::CrashLoop { .. })
    })
    .await;
    assert_eq!(
        sup.observe(&spec.name).map(|o| o.phase),
        Some(Phase::CrashLoop)
    );

    // Stop settles a crash-looped instance on Stopped; then it can be forgotten.
    sup.stop(&spec.name).await.expect("stop");
    assert_eq!(
        sup.observe(&spec.name).map(|o| o.phase),
        Some(Phase::Stopped)
    );
    sup.forget(&spec.name);
    assert!(sup.observe(&spec.name).is_none());
}

#[tokio::test]
async fn a_binary_that_cannot_run_is_an_error_from_start() {
    let fx = Fixture::new();
    let sup = supervisor();
    let mut events = sup.subscribe();

    let missing = fx.spec("missing", fx.path().join("no-such-pocketbase"));
    let err = sup
        .start(missing.clone())
        .await
        .expect_err("a missing binary cannot start");
    assert!(matches!(err, RuntimeError::Spawn { .. }), "{err:?}");

    let not_executable = fx.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\n").expect("write");
    let spec = fx.spec("noexec", not_executable);
    let err = sup
        .start(spec.clone())
        .await
        .expect_err("a non-executable binary cannot start");
    assert!(matches!(err, RuntimeError::Spawn { .. }), "{err:?}");

    for spec in [&missing, &spec] {
        let seen = sup.observe(&spec.name).expect("observed");
        assert_eq!((seen.pid, seen.phase), (None, Phase::Stopped));
    }
    assert!(
        events.try_recv().is_err(),
        "no event for a start that never happened"
    );
    assert!(matches!(
        sup.restart(&InstanceName::parse("nobody").expect("name"))
            .await,
        Err(RuntimeError::NotManaged(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_pocketbase_shut_down_gracefully() {
    let fx = Fixture::new();
    let sup = supervisor();
    let mut events = sup.subscribe();
    let spec = fx.pocketbase("gamma");

    let pid = sup.start(spec.clone()).await.expect("start PocketBase");
    wait_healthy(spec.port).await;
    sup.stop(&spec.name).await.expect("stop");

    assert!(!alive(pid), "stop returns after the process is gone");
    let exited = next_event(&mut events, "the exit", |e| {
        matches!(e, RuntimeEvent::Exited { .. })
    })
    .await;
    assert!(
        matches!(
            exited,
            RuntimeEvent::Exited {
                code: Some(0),
                signal: None,
                expected: true,
                ..
            }
        ),
        "PocketBase exits 0 on SIGTERM: {exited:?}"
    );
    let seen = sup.observe(&spec.name).expect("observed");
    assert_eq!((seen.pid, seen.phase), (None, Phase::Stopped));
    assert!(!spec.pid_file().exists(), "stop removes the pidfile");
    let log = std::fs::read_to_string(spec.log_file()).expect("log");
    assert!(
        log.contains(&format!("stopping pid {pid}: SIGTERM")),
        "{log}"
    );
    assert!(
        log.contains(&format!("pid {pid} stopped (exit code 0)")),
        "{log}"
    );

    // Idempotent, and fine for names never seen.
    sup.stop(&spec.name).await.expect("second stop");
    sup.stop(&InstanceName::parse("nobody").expect("name"))
        .await
        .expect("stop unknown");

    // Stopped means stopped: no restart comes after.
    assert_eq!(
        sup.observe(&spec.name).map(|o| o.phase),
        Some(Phase::Stopped)
    );

    // Restart of a stopped instance starts it with the same spec.
    let again = sup.restart(&spec.name).await.expect("restart");
    assert_ne!(again, pid);
    wait_healthy(spec.port).await;
    let restarted = sup
        .restart(&spec.name)
        .await
        .expect("restart a running one");
    assert_ne!(restarted, again);
    assert!(!alive(again));
    wait_healthy(spec.port).await;
    assert_eq!(
        sup.observe(&spec.name).map(|o| o.restarts),
        Some(0),
        "explicit restarts are not crashes"
    );
    sup.stop(&spec.name).await.expect("stop");
}

#[tokio::test]
async fn stop_kills_the_whole_group_when_sigterm_is_ignored() {
    let fx = Fixture::new();
    let sup = Supervisor::new(SupervisorConfig {
        stop_timeout: Duration::from_millis(500),
        ..SupervisorConfig::default()
    });
    let mut events = sup.subscribe();
    let script = fx.script(
        "stubborn",
        "trap '' TERM\nsleep 1000 &\necho $! > child.pid\nwhile :; do sleep 1; done",
    );
    let spec = fx.spec("stubborn", script);

    let pid = start_fixture(&sup, &spec).await;
    let child_pid_file = spec.instance_dir.join("child.pid");
    let child: u32 = wait_until(LIMIT, "the fixture's child", || {
        let path = child_pid_file.clone();
        async move {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        }
    })
    .await;
    assert!(alive(child));

    sup.stop(&spec.name).await.expect("stop");

    assert!(!alive(pid), "the leader is gone");
    let exited = next_event(&mut events, "the exit", |e| {
        matches!(e, RuntimeEvent::Exited { .. })
    })
    .await;
    assert!(
        matches!(
            exited,
            RuntimeEvent::Exited {
                signal: Some(9),
                expected: true,
                ..
            }
        ),
        "{exited:?}"
    );
    // The background child ignored SIGTERM as well; the group's SIGKILL got it.
    wait_dead(child).await;
    let log = std::fs::read_to_string(spec.log_file()).expect("log");
    assert!(
        log.contains(&format!("pid {pid} did not stop within 500ms: SIGKILL")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_supervisor_adopts_running_instances_without_restarting_them() {
    let fx = Fixture::new();
    let first = supervisor();
    let one = fx.pocketbase("one");
    let two = LaunchSpec {
        binary: pocketbase_bin(PB_OLD),
        ..fx.pocketbase("two")
    };
    let (a, b) = tokio::join!(first.start(one.clone()), first.start(two.clone()));
    let (pid_one, pid_two) = (a.expect("start one"), b.expect("start two"));
    tokio::join!(wait_healthy(one.port), wait_healthy(two.port));

    // The daemon goes away: supervision ends, the instances stay.
    first.shutdown().await;
    assert!(first.observe(&one.name).is_none());
    assert!(alive(pid_one) && alive(pid_two));
    assert!(healthy(one.port).await && healthy(two.port).await);

    // A start that does not adopt refuses to run a second copy.
    let bystander = supervisor();
    assert!(matches!(
        bystander.start(one.clone()).await,
        Err(RuntimeError::AlreadyRunning(_))
    ));
    drop(bystander);

    let second = supervisor();
    let mut events = second.subscribe();
    assert_eq!(
        second.adopt(one.clone()).await.expect("adopt one"),
        Some(pid_one)
    );
    assert_eq!(
        second.adopt(two.clone()).await.expect("adopt two"),
        Some(pid_two)
    );
    assert_eq!(
        second.adopt(two.clone()).await.expect("adopt again"),
        Some(pid_two)
    );
    for (spec, pid) in [(&one, pid_one), (&two, pid_two)] {
        let seen = second.observe(&spec.name).expect("observed");
        assert_eq!(
            (seen.pid, seen.phase, seen.restarts),
            (Some(pid), Phase::Running, 0)
        );
        assert!(seen.since <= chrono::Utc::now());
        let adopted = next_event(&mut events, "adoption", |e| {
            matches!(e, RuntimeEvent::Adopted { .. })
        })
        .await;
        assert!(
            matches!(adopted, RuntimeEvent::Adopted { pid: p, .. } if p == pid),
            "{adopted:?}"
        );
    }
    assert!(healthy(one.port).await && healthy(two.port).await);
    assert!(matches!(
        second.start(one.clone()).await,
        Err(RuntimeError::AlreadyRunning(_))
    ));

    // The adopted process is not our child: its exit is seen through a pidfd.
    kill(Pid::from_raw(pid_one as i32), Signal::SIGKILL).expect("kill -9");
    let exited = next_event(&mut events, "the adopted process's exit", |e| {
        matches!(e, RuntimeEvent::Exited { .. })
    })
    .await;
    assert!(
        matches!(exited, RuntimeEvent::Exited { pid, expected: false, .. } if pid == pid_one),
        "{exited:?}"
    );
    let spawned = next_event(&mut events, "the restart", |e| {
        matches!(e, RuntimeEvent::Spawned { .. })
    })
    .await;
    let RuntimeEvent::Spawned { pid: new_one, name } = spawned else {
        unreachable!()
    };
    assert_eq!(name, one.name);
    assert_ne!(new_one, pid_one);
    wait_healthy(one.port).await;
    assert_eq!(second.observe(&one.name).map(|o| o.restarts), Some(1));
    assert_eq!(
        second.observe(&two.name).and_then(|o| o.pid),
        Some(pid_two),
        "two was left alone"
    );

    // Stopping an adopted process works through its group like any other.
    let (a, b) = tokio::join!(second.stop(&one.name), second.stop(&two.name));
    a.expect("stop one");
    b.expect("stop two");
    assert!(!alive(new_one) && !alive(pid_two));
}

#[tokio::test]
async fn stale_pidfiles_are_not_adopted() {
    let fx = Fixture::new();
    let sup = supervisor();
    let spec = fx.spec("stale", fx.path().join("unused"));
    spec.create_layout().expect("layout");
    let pid_file = spec.pid_file();

    // No pidfile.
    assert_eq!(sup.adopt(spec.clone()).await.expect("adopt"), None);

    // Garbage.
    std::fs::write(&pid_file, "not a pid\n").expect("write");
    assert_eq!(sup.adopt(spec.clone()).await.expect("adopt"), None);
    assert!(!pid_file.exists(), "a stale pidfile is removed");

    // A dead pid.
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let gone_pid = gone.id();
    let gone_start = start_time(gone_pid);
    gone.wait().expect("wait");
    std::fs::write(&pid_file, format!("{gone_pid} {gone_start}\n")).expect("write");
    assert_eq!(sup.adopt(spec.clone()).await.expect("adopt"), None);
    assert!(!pid_file.exists());

    // A zombie with the right start time counts as dead.
    let mut zombie = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let zombie_pid = zombie.id();
    let zombie_start = start_time(zombie_pid);
    wait_until(LIMIT, "the child to become a zombie", || async move {
        (!alive(zombie_pid)).then_some(())
    })
    .await;
    std::fs::write(&pid_file, format!("{zombie_pid} {zombie_start}\n")).expect("write");
    assert_eq!(sup.adopt(spec.clone()).await.expect("adopt"), None);
    assert!(!pid_file.exists());
    zombie.wait().expect("reap");

    // A live process whose start time does not match: the pid was reused.
    let mut other = std::process::Command::new("sleep")
        .arg("1000")
        .current_dir(&spec.instance_dir)
        .spawn()
        .expect("spawn sleep");
    let other_pid = other.id();
    std::fs::write(
        &pid_file,
        format!("{other_pid} {}\n", start_time(other_pid) + 1),
    )
    .expect("write");
    let adopted = sup.adopt(spec.clone()).await;
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(adopted.expect("adopt"), None);
    assert!(!pid_file.exists());
    assert_eq!(
        sup.observe(&spec.name).map(|o| o.phase),
        Some(Phase::Stopped)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_instances_start_and_stop_concurrently() {
    let fx = Fixture::new();
    let sup = supervisor();
    let mut events = sup.subscribe();
    let specs: Vec<LaunchSpec> = (0..20)
        .map(|i| fx.pocketbase(&format!("many-{i}")))
        .collect();

    let started = futures::future::join_all(specs.iter().map(|s| sup.start(s.clone()))).await;
    let pids: Vec<u32> = started.into_iter().map(|r| r.expect("start")).collect();
    futures::future::join_all(specs.iter().map(|s| wait_healthy(s.port))).await;
    for (spec, pid) in specs.iter().zip(&pids) {
        assert_eq!(sup.observe(&spec.name).and_then(|o| o.pid), Some(*pid));
    }

    let stopped = futures::future::join_all(specs.iter().map(|s| sup.stop(&s.name))).await;
    for result in stopped {
        result.expect("stop");
    }
    for (spec, pid) in specs.iter().zip(&pids) {
        assert!(!alive(*pid), "{} (pid {pid}) still runs", spec.name);
        assert_eq!(
            sup.observe(&spec.name).map(|o| o.phase),
            Some(Phase::Stopped)
        );
    }
    let mut expected_exits = 0;
    while let Ok(event) = events.try_recv() {
        match event {
            RuntimeEvent::Exited { expected: true, .. } => expected_exits += 1,
            RuntimeEvent::Exited { .. } => panic!("unexpected exit: {event:?}"),
            _ => {}
        }
    }
    assert_eq!(expected_exits, 20);
}

#[tokio::test]
async fn logs_are_rotated_by_size() {
    let fx = Fixture::new();
    let sup = Supervisor::new(SupervisorConfig {
        log_max_bytes: 4096,
        log_keep: 2,
        ..SupervisorConfig::default()
    });
    let line = "x".repeat(100);
    let script = fx.script(
        "chatty",
        &format!("while :; do echo \"{line}\"; echo \"to stderr\" >&2; sleep 0.01; done"),
    );
    let spec = fx.spec("chatty", script);
    let log = spec.log_file();
    let rotated = |n: usize| PathBuf::from(format!("{}.{n}", log.display()));

    start_fixture(&sup, &spec).await;
    // The background tick rotates on its own.
    wait_until(LIMIT, "the first rotation", || {
        let first = rotated(1);
        async move { first.exists().then_some(()) }
    })
    .await;
    // Then more rotations, asked for directly, once the log has outgrown
    // the limit again.
    for _ in 0..3 {
        wait_until(LIMIT, "the log to grow", || {
            let log = log.clone();
            async move { (std::fs::metadata(&log).ok()?.len() > 4096).then_some(()) }
        })
        .await;
        sup.rotate_logs().await;
    }
    assert!(rotated(2).exists());
    assert!(!rotated(3).exists(), "only log_keep rotated files are kept");

    // The child keeps writing into the truncated file, at its new end.
    wait_until(LIMIT, "output after the rotation", || {
        let log = log.clone();
        let line = line.clone();
        async move {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains(&line).then_some(())
        }
    })
    .await;
    for path in [log.clone(), rotated(1), rotated(2)] {
        let bytes = std::fs::read(&path).expect("read log");
        assert!(
            !bytes.contains(&0),
            "{} has a hole: the child must append",
            path.display()
        );
        if path == log {
            // Still being written to and rotated: its contents move on.
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(&line) && text.contains("to stderr"),
            "{}: {text}",
            path.display()
        );
    }
    sup.stop(&spec.name).await.expect("stop");
}
