//! The navigator tab: a plane (or line) through concept space around the prompt, drawn as a
//! zoomable canvas of tiles made by the worker, with the concept meter's island overlaid.
//!
//! State only changes through [`NavigatorPanel::ui`] (what the user did) and
//! [`NavigatorPanel::apply`] (what the worker reported for the panel's jobs).

use egui::Ui;

use super::panels::{PanelContext, Request};
use crate::worker::{Event, JobId};

/// The navigator's state.
#[derive(Default)]
pub struct NavigatorPanel {
    job: Option<JobId>,
}

impl NavigatorPanel {
    /// Draws the panel; returns the jobs it wants submitted.
    pub fn ui(&mut self, ui: &mut Ui, _cx: &PanelContext<'_>) -> Vec<Request> {
        ui.label("navigator");
        Vec::new()
    }

    /// The worker accepted (or refused, `None`) the request made last.
    pub fn started(&mut self, id: Option<JobId>) {
        self.job = id;
    }

    /// Whether `id` is a job of this panel.
    pub fn owns(&self, id: JobId) -> bool {
        self.job == Some(id)
    }

    /// An event of one of this panel's jobs.
    pub fn apply(&mut self, _ctx: &egui::Context, event: Event) {
        if event.ends_job() {
            self.job = None;
        }
    }
}
