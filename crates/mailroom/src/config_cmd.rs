//! `mailroom config`: the settings a process started here would run with — defaults, the file
//! and the environment merged — with secrets redacted, so the output can be pasted into an
//! issue or a chat. Loading already refused unknown keys, so what is printed is all that applies.

use std::process::ExitCode;

use pipeline_core::Settings;

/// The effective settings could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ConfigCmdError {
    /// The merged settings could not be read back.
    #[error(transparent)]
    Settings(#[from] pipeline_core::settings::SettingsError),
    /// They have no TOML form (cannot happen for settings that came from TOML and the
    /// environment, but is reported rather than assumed).
    #[error("cannot render the settings as TOML: {0}")]
    Toml(#[from] toml::ser::Error),
    /// JSON rendering failed.
    #[error("cannot render the settings as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Renders the effective, redacted settings as TOML (or JSON).
pub fn render(settings: &Settings, json: bool) -> Result<String, ConfigCmdError> {
    let value = settings.effective_redacted()?;
    if json {
        return Ok(serde_json::to_string_pretty(&value)? + "\n");
    }
    Ok(toml::to_string(&value)?)
}

/// Prints them.
pub fn print(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    print!("{}", render(settings, json)?);
    Ok(ExitCode::SUCCESS)
}
