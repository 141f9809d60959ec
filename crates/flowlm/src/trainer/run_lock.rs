//! One training per run directory. `RUN/.lock` holds the owner's process id; it is created
//! exclusively, so a second `flowlm train` into the same directory stops before it writes
//! anything, and removed when the run ends. A lock left by a process that no longer exists
//! (after `kill -9`) is taken over.

use crate::error::{FlowError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = ".lock";

/// Held while a run directory is being written; dropping it releases the directory.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    pub fn acquire(run: &Path) -> Result<Self> {
        let path = run.join(LOCK_FILE);
        // Two attempts: the second follows the removal of a stale lock.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id())
                        .map_err(|e| FlowError::io(&path, e))?;
                    return Ok(Self { path });
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|text| text.trim().parse::<u32>().ok());
                    match owner {
                        Some(pid) if process_exists(pid) => {
                            return Err(FlowError::argument(
                                "--out",
                                format!(
                                    "{} is being written by another training (process {pid}); wait for it or choose another directory",
                                    run.display()
                                ),
                            ));
                        }
                        _ => {
                            std::fs::remove_file(&path).map_err(|e| FlowError::io(&path, e))?;
                        }
                    }
                }
                Err(error) => return Err(FlowError::io(&path, error)),
            }
        }
        Err(FlowError::argument(
            "--out",
            format!("could not lock {}", path.display()),
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(target_os = "linux")]
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Without /proc a lock is never presumed stale: delete `RUN/.lock` by hand after a crash.
#[cfg(not(target_os = "linux"))]
fn process_exists(_pid: u32) -> bool {
    true
}
