//! The result side of the window: the picture as it forms, the progress of the job, the export
//! buttons, the toolbar and the status line.

use egui::{RichText, Ui};

use super::Action;
use super::jobs::{JobTracker, Status};
use super::picture_view::PictureView;

/// A message of the app itself (an export written, a copy made), shown after the job status.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The text.
    pub text: String,
    /// Whether it reports a failure (drawn in the error colour).
    pub is_error: bool,
}

/// The toolbar: loading a model, opening or pasting a recipe.
pub fn toolbar_ui(ui: &mut Ui, can_open_dialog: bool) -> Option<Action> {
    let mut action = None;
    ui.horizontal(|ui| {
        let load = ui
            .add_enabled(can_open_dialog, egui::Button::new("Load model folder…"))
            .on_hover_text("A Stable Diffusion model folder in diffusers' layout");
        if load.clicked() {
            action = Some(Action::LoadModelFolder);
        }
        let open = ui
            .add_enabled(can_open_dialog, egui::Button::new("Open recipe…"))
            .on_hover_text(
                "Make a picture again from its recipe: a .json file or a PNG made by \
                 interconcept (or drop one on the window)",
            );
        if open.clicked() {
            action = Some(Action::OpenRecipe);
        }
        let paste = ui
            .add_enabled(can_open_dialog, egui::Button::new("Paste recipe"))
            .on_hover_text(
                "Make the picture of the recipe JSON on the clipboard (Ctrl+V outside text \
                 fields does the same)",
            );
        if paste.clicked() {
            action = Some(Action::PasteRecipe);
        }
    });
    action
}

/// The picture, the progress bar, and the save and copy buttons.
///
/// `can_export` is true when the picture on screen is the finished one and no dialog is open.
pub fn result_panel_ui(
    ui: &mut Ui,
    view: &PictureView,
    jobs: &JobTracker,
    can_export: bool,
) -> Option<Action> {
    let mut action = None;
    view.picture_ui(ui);
    if jobs.finished().is_some_and(|f| f.recipe.non_finite) {
        ui.label(
            RichText::new(
                "the model produced NaN or infinity: the picture is a marker, and its recipe \
                 says so",
            )
            .color(ui.visuals().error_fg_color),
        );
    }
    ui.add_space(6.0);

    let width = super::picture_view::DISPLAY_SIDE;
    match jobs.progress() {
        Some((step, num_steps)) => {
            let fraction = if num_steps == 0 {
                0.0
            } else {
                step as f32 / num_steps as f32
            };
            ui.add(
                egui::ProgressBar::new(fraction)
                    .desired_width(width)
                    .text(format!("step {step} of {num_steps}")),
            );
        }
        None => {
            // Keep the place of the bar so the buttons do not move when a job starts.
            ui.allocate_space(egui::vec2(width, ui.spacing().interact_size.y));
        }
    }

    ui.add_space(6.0);
    ui.horizontal(|ui| {
        let save = ui
            .add_enabled(can_export, egui::Button::new("Save PNG…"))
            .on_hover_text("Save the picture; its recipe goes inside the PNG");
        if save.clicked() {
            action = Some(Action::SavePng);
        }
        let copy = ui
            .add_enabled(can_export, egui::Button::new("Copy recipe"))
            .on_hover_text("Copy the recipe JSON that makes this picture again");
        if copy.clicked() {
            action = Some(Action::CopyRecipe);
        }
    });
    action
}

/// The status line: the model, then where the job stands (errors in red), then any notice.
pub fn status_line_ui(ui: &mut Ui, jobs: &JobTracker, notice: Option<&Notice>) {
    let error_color = ui.visuals().error_fg_color;
    ui.horizontal(|ui| {
        match jobs.model() {
            Some(model) => ui.label(format!("model: {}", model.name)),
            None => ui.weak("no model"),
        };
        ui.separator();
        match jobs.status() {
            Status::Failed(error) => {
                ui.label(RichText::new(format!("error: {error}")).color(error_color));
            }
            status => {
                ui.label(status_text(status));
            }
        }
        if let Some(notice) = notice {
            ui.separator();
            let text = RichText::new(&notice.text);
            ui.label(if notice.is_error {
                text.color(error_color)
            } else {
                text
            });
        }
    });
}

/// The words for a status other than a failure.
pub fn status_text(status: &Status) -> String {
    match status {
        Status::Idle => "idle".into(),
        Status::LoadingModel => "loading model…".into(),
        Status::Ready => "ready".into(),
        Status::Generating => "generating…".into(),
        Status::Done { elapsed_ms } => format!("done in {elapsed_ms} ms"),
        Status::Cancelled => "cancelled".into(),
        Status::Failed(error) => format!("error: {error}"),
    }
}
