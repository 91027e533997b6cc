//! Placeholder until the GUI branch is merged.

/// Opens the explorer window.
pub fn run_gui(_model_dir: std::path::PathBuf) -> anyhow::Result<()> {
    anyhow::bail!("the window is not built yet")
}
