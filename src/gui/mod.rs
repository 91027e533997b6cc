//! The explorer window: an eframe app that talks to the [`crate::worker::Worker`] and draws what
//! it reports. Nothing in here touches a tensor.
//!
//! - [`app`]: the [`ExplorerApp`] itself, which owns the worker and drains its events.
//! - [`settings`]: what the generate panel remembers between runs.
//! - [`jobs`]: which jobs are current and what the status line says (no egui).
//! - [`generate_panel`] and [`result_panel`]: the `_ui` functions that draw and report
//!   [`Action`]s.
//! - [`picture_view`]: the one texture that previews and the finished picture update in place.
//! - [`dialogs`]: native file dialogs, off the UI thread, and writes that never replace a file
//!   without asking.
//! - [`recipe_restore`]: from an opened, dropped or pasted recipe to the settings (no egui).
//! - [`panels`]: the tabs ([`panels::Tab`]) and what they share; [`navigator_panel`] and
//!   [`minds_panel`] draw the navigator and alien-minds tabs and ask for worker jobs as
//!   [`panels::Request`]s; [`minds`] and [`navigator`] hold their parts.

pub mod app;
pub mod dialogs;
pub mod generate_panel;
pub mod jobs;
pub mod minds;
pub mod minds_panel;
pub mod navigator;
pub mod navigator_panel;
pub mod panels;
pub mod picture_view;
pub mod recipe_restore;
pub mod result_panel;
pub mod settings;

use std::path::PathBuf;

use candle_core::Device;

pub use app::ExplorerApp;
pub use panels::Tab;
pub use settings::GenerateSettings;

/// The window title, also the name eframe stores settings under.
pub const APP_NAME: &str = "interconcept";

/// What the user asked for in a frame; the panels report it, the app does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Make a picture from the current settings.
    Generate,
    /// Choose a model folder and load it.
    LoadModelFolder,
    /// Save the finished picture as PNG with its recipe.
    SavePng,
    /// Copy the finished picture's recipe JSON to the clipboard.
    CopyRecipe,
    /// Choose a recipe (JSON, or a PNG made by the program) and make its picture again.
    OpenRecipe,
    /// Make the picture of the recipe JSON on the clipboard again.
    PasteRecipe,
}

/// Opens the explorer window over the model in `model_dir` and runs until it is closed; the
/// worker computes on `device`, or on [`pick_device`]'s choice when `None`.
pub fn run_gui(model_dir: PathBuf, device: Option<Device>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Wgpu,
        viewport: egui::ViewportBuilder::default()
            .with_title(APP_NAME)
            .with_inner_size([1180.0, 760.0])
            .with_min_inner_size([700.0, 520.0]),
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        APP_NAME,
        options,
        Box::new(move |cc| {
            let device = device.unwrap_or_else(pick_device);
            Ok(Box::new(ExplorerApp::on_device(cc, model_dir, device)))
        }),
    )
    .map_err(|e| {
        let no_display = ["DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"]
            .iter()
            .all(|v| std::env::var_os(v).is_none());
        if cfg!(target_os = "linux") && no_display {
            anyhow::anyhow!(
                "cannot open the window: no display (DISPLAY and WAYLAND_DISPLAY are unset); on a \
                 server run it under xvfb-run, or use the command line (interconcept --help)"
            )
        } else {
            anyhow::anyhow!("cannot open the window: {e}")
        }
    })
}

/// The device the worker computes on: a GPU when the build supports one and it is there.
pub fn pick_device() -> Device {
    let gpu = if candle_core::utils::cuda_is_available() {
        Some(Device::new_cuda(0))
    } else if candle_core::utils::metal_is_available() {
        Some(Device::new_metal(0))
    } else {
        None
    };
    match gpu {
        Some(Ok(device)) => device,
        Some(Err(e)) => {
            tracing::warn!("GPU present but unusable, computing on the CPU: {e}");
            Device::Cpu
        }
        None => Device::Cpu,
    }
}
