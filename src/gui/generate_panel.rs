//! The generate panel: prompt, seed, steps, guidance, sampler and size, and the Generate button.
//!
//! It edits [`GenerateSettings`] in place and reports what the user asked for as an
//! [`Action`]; the app does the work.

use egui::{Key, Ui};

use super::Action;
use super::settings::{GenerateSettings, MAX_SEED};
use crate::engine::pipeline::MAX_SIDE;
use crate::engine::scheduler::SamplerKind;

/// The most steps the panel's drag value goes to (Stable Diffusion schedules train 1000).
const MAX_STEPS: usize = 1000;

/// The highest guidance scale the drag value goes to.
const MAX_GUIDANCE: f64 = 30.0;

/// Draws the panel; `can_generate` is false while no model is loaded.
pub fn generate_panel_ui(
    ui: &mut Ui,
    settings: &mut GenerateSettings,
    can_generate: bool,
) -> Option<Action> {
    let mut action = None;
    ui.heading("New picture");
    ui.add_space(4.0);

    egui::Grid::new("generate-settings")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            if prompt_row_ui(ui, settings) && can_generate {
                action = Some(Action::Generate);
            }
            seed_row_ui(ui, settings);
            numbers_rows_ui(ui, settings);
            sampler_row_ui(ui, &mut settings.sampler);
            size_rows_ui(ui, settings);
        });

    ui.add_space(8.0);
    let generate = ui
        .add_enabled(
            can_generate && settings.size.is_some(),
            egui::Button::new("Generate").min_size(egui::vec2(120.0, 28.0)),
        )
        .on_hover_text("Make a picture (Enter in the prompt does the same)")
        .on_disabled_hover_text("Waiting for a model to load");
    if generate.clicked() {
        action = Some(Action::Generate);
    }
    action
}

/// The prompt row; returns whether Enter was pressed in it.
fn prompt_row_ui(ui: &mut Ui, settings: &mut GenerateSettings) -> bool {
    let label = ui.label("Prompt");
    let response = ui
        .add(
            egui::TextEdit::singleline(&mut settings.prompt)
                .hint_text("empty: unconditional")
                .desired_width(220.0),
        )
        .labelled_by(label.id);
    ui.end_row();
    response.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter))
}

fn seed_row_ui(ui: &mut Ui, settings: &mut GenerateSettings) {
    let label = ui.label("Seed");
    ui.horizontal(|ui| {
        ui.add(
            // A recipe from the command line may hold any u64 seed: kept as it is.
            egui::DragValue::new(&mut settings.seed)
                .range(0..=MAX_SEED)
                .clamp_existing_to_range(false),
        )
        .labelled_by(label.id);
        if ui
            .button("Random")
            .on_hover_text("Pick a random seed")
            .clicked()
        {
            settings.seed = rand::random_range(0..=MAX_SEED);
        }
    });
    ui.end_row();
}

fn numbers_rows_ui(ui: &mut Ui, settings: &mut GenerateSettings) {
    // Out-of-range values (say, from an edited settings file) are kept and sent as they are:
    // the worker validates every request and says what is wrong.
    let label = ui.label("Steps");
    ui.add(
        egui::DragValue::new(&mut settings.num_steps)
            .range(1..=MAX_STEPS)
            .clamp_existing_to_range(false),
    )
    .labelled_by(label.id);
    ui.end_row();

    let label = ui.label("Guidance");
    ui.add(
        egui::DragValue::new(&mut settings.guidance_scale)
            .range(0.0..=MAX_GUIDANCE)
            .speed(0.05)
            .fixed_decimals(2)
            .clamp_existing_to_range(false),
    )
    .on_hover_text("Classifier-free guidance; at 1 or below the unconditional pass is skipped")
    .labelled_by(label.id);
    ui.end_row();
}

fn sampler_row_ui(ui: &mut Ui, sampler: &mut SamplerKind) {
    let label = ui.label("Sampler");
    egui::ComboBox::from_id_salt("sampler")
        .selected_text(sampler.name())
        .show_ui(ui, |ui| {
            for kind in SamplerKind::ALL {
                ui.selectable_value(sampler, kind, kind.name());
            }
        })
        .response
        .labelled_by(label.id);
    ui.end_row();
}

fn size_rows_ui(ui: &mut Ui, settings: &mut GenerateSettings) {
    let Some([width, height]) = &mut settings.size else {
        ui.label("Size");
        ui.weak("waiting for the model");
        ui.end_row();
        return;
    };
    for (name, side) in [("Width", width), ("Height", height)] {
        let label = ui.label(name);
        ui.add(
            egui::DragValue::new(side)
                .range(8..=MAX_SIDE)
                .speed(8.0)
                .suffix(" px")
                .clamp_existing_to_range(false),
        )
        .labelled_by(label.id);
        ui.end_row();
    }
}
