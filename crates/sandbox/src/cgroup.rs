//! A cgroup per sandbox: processes, memory and CPU.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::Limits;

/// A cgroup (v1: one per controller; v2: one) holding a sandbox's processes.
pub struct Cgroup {
    /// (controller or "" for v2, directory).
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Cgroup {
    pub fn create(name: &str, limits: &Limits) -> Result<Cgroup, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let mut cg = Cgroup { dirs: Vec::new() };
        let v1 = |controller: &str| {
            own.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                list.split(',').any(|c| c == controller).then(|| path.to_owned())
            })
        };
        let period = 100_000u64;
        let background = limits.priority == crate::Priority::Background;
        let quota = (limits.cpu_millis.max(10) * period / 1000).to_string();
        let result = if Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
            for (controller, settings) in [
                ("pids", vec![("pids.max", limits.max_tasks.to_string())]),
                ("memory", vec![("memory.limit_in_bytes", limits.memory_bytes.to_string())]),
            ] {
                let parent = v1(controller).ok_or_else(|| format!("no {controller} cgroup"))?;
                let dir = Path::new("/sys/fs/cgroup").join(controller).join(parent.trim_start_matches('/')).join(name);
                cg.add(controller, dir, &settings)?;
            }
            // CPU where the controller is there (its absence is noted, not
            // fatal: nice still ranks the sandbox below the server). Weight
            // and quota first: setting `cpu.idle` resets the weight.
            if let Some(parent) = v1("cpu") {
                let dir = Path::new("/sys/fs/cgroup/cpu").join(parent.trim_start_matches('/')).join(name);
                let mut settings = vec![("cpu.cfs_period_us", period.to_string()), ("cpu.cfs_quota_us", quota.clone())];
                if background {
                    let has_idle =
                        dir.with_file_name("cpu.idle").exists() || Path::new("/sys/fs/cgroup/cpu/cpu.idle").exists();
                    settings.push(if has_idle { ("cpu.idle", "1".to_owned()) } else { ("cpu.shares", "2".to_owned()) });
                }
                cg.add("cpu", dir, &settings)?;
            }
            Ok(())
        } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            let parent = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").to_owned();
            let dir = Path::new("/sys/fs/cgroup").join(parent.trim_start_matches('/')).join(name);
            let mut settings =
                vec![("pids.max", limits.max_tasks.to_string()), ("memory.max", limits.memory_bytes.to_string())];
            let controllers = std::fs::read_to_string(dir.with_file_name("cgroup.subtree_control")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpu") {
                settings.push(("cpu.max", format!("{quota} {period}")));
                if background {
                    settings.push(("cpu.weight", "1".into()));
                    if Path::new("/sys/fs/cgroup/cpu.idle").exists() || dir.with_file_name("cpu.idle").exists() {
                        settings.push(("cpu.idle", "1".into()));
                    }
                }
            }
            cg.add("", dir, &settings)
        } else {
            Err("no cgroup file system".into())
        };
        // On an error, dropping `cg` removes what was made.
        result.map(|()| cg)
    }

    fn add(&mut self, controller: &'static str, dir: PathBuf, settings: &[(&str, String)]) -> Result<(), String> {
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        self.dirs.push((controller, dir.clone()));
        for (file, value) in settings {
            std::fs::write(dir.join(file), value).map_err(|e| format!("writing {}/{file}: {e}", dir.display()))?;
        }
        Ok(())
    }

    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    pub fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|(c, d)| {
            let file = if c.is_empty() { "memory.events" } else { "memory.oom_control" };
            std::fs::read_to_string(d.join(file))
                .is_ok_and(|t| t.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0")))
        })
    }

    fn pids(&self) -> Vec<String> {
        let mut pids: Vec<String> = self
            .procs_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        pids.sort();
        pids.dedup();
        pids
    }

    /// Kills whatever is still in the cgroup (dropping it removes it).
    pub async fn sweep(&self) {
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            let _ = Command::new("kill").arg("-KILL").args(&pids).stderr(Stdio::null()).status().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Also when a sandbox is abandoned midway: the processes die with bwrap,
/// and the empty cgroup goes here.
impl Drop for Cgroup {
    fn drop(&mut self) {
        for (_, dir) in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
