//! Saving and loading a [`StepPolicy`] as JSON. Parameters are written as exact decimal strings
//! (see `exact_floats.rs`) so a reloaded policy acts bit-identically.

use std::path::{Path, PathBuf};

use super::network::StepPolicy;
use crate::error::FlowError;

impl StepPolicy {
    /// Writes the policy as JSON, through a temporary file and a rename so a crash never
    /// leaves a half-written policy behind.
    pub fn save(&self, path: impl AsRef<Path>) -> crate::Result<()> {
        let path = path.as_ref();
        let json = serde_json::to_string_pretty(self).map_err(|error| FlowError::Parse {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        let mut temporary_name = path.as_os_str().to_owned();
        temporary_name.push(".tmp");
        let temporary = PathBuf::from(temporary_name);
        std::fs::write(&temporary, json).map_err(|error| FlowError::io(&temporary, error))?;
        std::fs::rename(&temporary, path).map_err(|error| FlowError::io(path, error))
    }

    /// Reads a policy written by `save`, checking that its parameters fit its config.
    pub fn load(path: impl AsRef<Path>) -> crate::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| FlowError::io(path, error))?;
        let parse_error = |message: String| FlowError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let policy: StepPolicy =
            serde_json::from_str(&text).map_err(|error| parse_error(error.to_string()))?;
        policy
            .config
            .validate()
            .map_err(|error| parse_error(error.to_string()))?;
        let expected = policy.config.parameter_count();
        if policy.parameter_count() != expected {
            return Err(parse_error(format!(
                "policy has {} parameters but hidden = {} needs {expected}",
                policy.parameter_count(),
                policy.config.hidden
            )));
        }
        Ok(policy)
    }
}
