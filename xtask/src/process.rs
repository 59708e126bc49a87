//! Server processes that never outlive xtask.
//!
//! Each server runs in its own process group, is started through `setpriv --pdeathsig`
//! so the kernel stops it if xtask dies (even by SIGKILL), is stopped when its handle is
//! dropped, and is stopped by the Ctrl-C / SIGTERM handler installed by [`on_interrupt_stop_all`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Process groups of every running server, for the interrupt handler.
static RUNNING_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// How to start a server.
pub(crate) struct Launch {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) dir: PathBuf,
}

/// A running server; stopped on drop.
pub(crate) struct ServerProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `launch` with its output in `log`.
    pub(crate) fn spawn(name: &'static str, launch: &Launch, log: &Path) -> Result<Self, String> {
        let log_file =
            File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "TERM", "--"])
            .arg(&launch.program)
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.dir)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", launch.program))?;
        let pid = i32::try_from(child.id()).map_err(|e| format!("pid out of range: {e}"))?;
        lock_groups().push(pid);
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    /// The server's name, for messages.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// `Some(status)` once the process has exited.
    pub(crate) fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the server's log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "--- last lines of {} ---\n{}",
            self.log.display(),
            all[start..].join("\n")
        )
    }

    fn stop(&mut self) {
        if self.exit_status().is_some() {
            forget_group(self.child.id());
            return;
        }
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.exit_status().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = self.child.wait();
        forget_group(self.child.id());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// On Ctrl-C or SIGTERM: stop every running server, then exit with 130.
pub(crate) fn on_interrupt_stop_all() {
    let result = ctrlc::set_handler(|| {
        eprintln!("\nxtask: interrupted, stopping the servers");
        let groups: Vec<i32> = lock_groups().clone();
        for group in &groups {
            let _ = killpg(Pid::from_raw(*group), Signal::SIGTERM);
        }
        std::thread::sleep(Duration::from_secs(2));
        for group in &groups {
            let _ = killpg(Pid::from_raw(*group), Signal::SIGKILL);
        }
        std::process::exit(130);
    });
    if let Err(error) = result {
        eprintln!("xtask: cannot install the Ctrl-C handler ({error}); servers still stop on exit");
    }
}

fn lock_groups() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING_GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn forget_group(pid: u32) {
    lock_groups().retain(|group| i64::from(*group) != i64::from(pid));
}
