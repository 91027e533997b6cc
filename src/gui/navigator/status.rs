//! The navigator's status row (tiles done of those asked, the last fill's time, Cancel and
//! Export) and its report of the island's reach.

use egui::Ui;

use super::super::panels::PanelContext;
use super::tiles::{Ended, JobBook};
use crate::navigator::island::{ISLAND_THRESHOLD, IslandRadii, Radius};

/// Tiles done of those asked, the last fill's time, Cancel and Export; returns whether
/// Cancel and Export were pressed.
pub fn status_ui(
    ui: &mut Ui,
    cx: &PanelContext<'_>,
    jobs: &JobBook,
    has_tiles: bool,
    notice: Option<&(String, bool)>,
) -> (bool, bool) {
    let mut pressed = (false, false);
    ui.horizontal(|ui| {
        let running = jobs.is_running();
        pressed.0 = ui
            .add_enabled(running, egui::Button::new("Cancel"))
            .clicked();
        match jobs.latest() {
            Some(job) => {
                let (done, asked) = job.progress();
                let how = match &job.ended {
                    None => "making",
                    Some(Ended::Done { .. }) => "done",
                    Some(Ended::Cancelled) => "cancelled",
                    Some(Ended::Failed(_)) => "failed",
                };
                ui.label(format!("tiles {done} / {asked} ({how})"));
                if let Some(Ended::Failed(error)) = &job.ended {
                    ui.colored_label(ui.visuals().error_fg_color, error);
                }
            }
            None => {
                ui.label("no tiles asked yet");
            }
        }
        if let Some((count, elapsed_ms)) = jobs.last_fill() {
            ui.label(format!(
                "last fill: {count} tiles in {:.1} s",
                elapsed_ms as f64 / 1000.0
            ));
        }
        pressed.1 = ui
            .add_enabled(
                !cx.dialog_open && has_tiles,
                egui::Button::new("Export mosaic…"),
            )
            .clicked();
        if let Some((text, is_error)) = notice {
            if *is_error {
                ui.colored_label(ui.visuals().error_fg_color, text);
            } else {
                ui.weak(text);
            }
        }
    });
    pressed
}

/// The island's reach along the half-axes, in words.
pub fn island_report_ui(
    ui: &mut Ui,
    island: Option<&(String, IslandRadii)>,
    no_meter: bool,
    unit: &str,
) {
    let Some((label, radii)) = island else {
        ui.weak(if no_meter {
            "this model has no concept meter: no island to show"
        } else {
            "island: fill a grid around the centre (choose a concept if the prompt names none)"
        });
        return;
    };
    if radii.plus_u == Radius::NoIsland {
        ui.label(format!(
            "the centre scores below {ISLAND_THRESHOLD} for {label}: no island here"
        ));
        return;
    }
    let parts: Vec<String> = radii
        .named()
        .iter()
        .map(|(name, radius)| match radius {
            Radius::Shore(r) => format!("{name} {r:.2}"),
            Radius::Beyond(r) => format!("{name} beyond the view (> {r:.2})"),
            Radius::NoIsland | Radius::Unknown => format!("{name} ?"),
        })
        .collect();
    ui.label(format!(
        "{label} island radius ({unit}): {}",
        parts.join(", ")
    ));
}
