//! The navigator tab: a plane (or line) through concept space around the prompt, drawn as a
//! zoomable canvas of tiles made by the worker, with the concept meter's island overlaid, and a
//! gallery of random points of interconcept space.
//!
//! State only changes through [`NavigatorPanel::ui`] (what the user did) and
//! [`NavigatorPanel::apply`] (what the worker reported for the panel's jobs). The parts live in
//! [`super::navigator`]; the modes are drawn by [`plane`] and [`strip`].

mod plane;
mod strip;

use egui::Ui;

use super::navigator::controls::{Controls, Mode};
use super::navigator::detail::{DetailAction, tile_window_ui};
use super::navigator::settings::NavigatorSettings;
use super::navigator::tiles::{Asked, Ended, JobBook, Purpose, TileStore};
use super::navigator::view::{FillGrid, PlaneView};
use super::panels::{PanelContext, Request};
use crate::mosaic::Mosaic;
use crate::navigator::island::IslandRadii;
use crate::navigator::{describe, describe_noise};
use crate::recipe::Recipe;
use crate::worker::{Event, GenerateJob, JobId};

/// The largest grid a fill may ask for, per side.
pub const MAX_FILL: usize = 15;

/// The smallest canvas, in points.
const MIN_CANVAS: egui::Vec2 = egui::vec2(200.0, 160.0);

/// The navigator's state.
#[derive(Default)]
pub struct NavigatorPanel {
    controls: Controls,
    view: PlaneView,
    tiles: TileStore,
    jobs: JobBook,
    /// The lattice of the newest fill: islands are measured on it.
    last_grid: Option<FillGrid>,
    /// The recipe of the tile opened large.
    open: Option<Recipe>,
    /// A message for the user, and whether it is an error.
    notice: Option<(String, bool)>,
    /// Tiles drawn on the canvas in the last frame.
    drawn: usize,
    /// The island's reach as last measured, with the concept's label.
    island: Option<(String, IslandRadii)>,
    /// Whether the island overlay is drawn by the GPU score-field shader.
    gpu_field: bool,
}

impl NavigatorPanel {
    /// What the controls hold.
    pub fn controls(&self) -> &Controls {
        &self.controls
    }

    /// The tiles the panel holds.
    pub fn tiles(&self) -> &TileStore {
        &self.tiles
    }

    /// The panel's jobs.
    pub fn jobs(&self) -> &JobBook {
        &self.jobs
    }

    /// The part of the plane the canvas shows.
    pub fn view(&self) -> &PlaneView {
        &self.view
    }

    /// How many tiles the plane canvas drew in the last frame.
    pub fn drawn(&self) -> usize {
        self.drawn
    }

    /// The island as last measured: the concept's label and its radii.
    pub fn island(&self) -> Option<&(String, IslandRadii)> {
        self.island.as_ref()
    }

    /// What the panel remembers between runs.
    pub fn settings(&self) -> NavigatorSettings {
        NavigatorSettings {
            controls: self.controls.clone(),
            view: self.view,
        }
    }

    /// Takes up remembered settings (brought into range first).
    pub fn restore(&mut self, settings: NavigatorSettings) {
        let settings = settings.sanitized();
        self.controls = settings.controls;
        self.view = settings.view;
    }

    /// Draws the island overlay with the GPU score field (when eframe renders with wgpu and
    /// the pipeline is registered) or with egui shapes.
    pub fn set_gpu_field(&mut self, on: bool) {
        self.gpu_field = on;
    }

    /// Whether the island overlay is drawn by the GPU score field.
    pub fn gpu_field(&self) -> bool {
        self.gpu_field
    }

    /// Draws the panel; returns the jobs it wants submitted.
    pub fn ui(&mut self, ui: &mut Ui, cx: &PanelContext<'_>) -> Vec<Request> {
        let mut requests = Vec::new();
        ui.horizontal(|ui| {
            for mode in Mode::ALL {
                ui.selectable_value(&mut self.controls.mode, mode, mode.title());
            }
        });
        let Some(template) = cx.template() else {
            ui.label("The navigator starts once a model is loaded.");
            return requests;
        };
        let labels = cx.model.map_or(&[][..], |m| m.score_labels.as_slice());
        match self.controls.mode {
            Mode::Plane => self.plane_ui(ui, cx, &template, labels, &mut requests),
            Mode::Line | Mode::Gallery => self.strip_ui(ui, cx, &template, labels, &mut requests),
        }
        self.open_tile_ui(ui.ctx(), labels, &mut requests);
        requests
    }

    /// Carries out Cancel and Export.
    fn finish(
        &mut self,
        cancel: bool,
        export: Option<anyhow::Result<Mosaic>>,
        requests: &mut Vec<Request>,
    ) {
        if cancel {
            let asked = Asked {
                purpose: Purpose::Cancel,
                recipes: Vec::new(),
                sides: Vec::new(),
            };
            requests.push(self.jobs.ask(asked));
        }
        match export {
            Some(Ok(mosaic)) => requests.push(Request::ExportMosaic(Box::new(mosaic))),
            Some(Err(error)) => self.notice = Some((format!("{error:#}"), true)),
            None => {}
        }
    }

    /// The tile opened large, if any.
    fn open_tile_ui(
        &mut self,
        ctx: &egui::Context,
        labels: &[String],
        requests: &mut Vec<Request>,
    ) {
        let Some(recipe) = &self.open else {
            return;
        };
        let Some(tile) = self.tiles.find(recipe) else {
            self.open = None;
            return;
        };
        let mut place = recipe
            .point
            .as_deref()
            .map_or_else(|| format!("{:?}", recipe.prompt), describe);
        if let Some(noise) = recipe.noise.as_deref() {
            place = format!("{place} from {}", describe_noise(noise));
        }
        let mut open = true;
        let action = tile_window_ui(ctx, tile, &place, labels, &mut open);
        let recipe = tile.recipe.clone();
        match action {
            Some(DetailAction::CopyRecipe) => {
                ctx.copy_text(recipe.to_json());
                self.notice = Some(("recipe copied".into(), false));
            }
            Some(DetailAction::OpenInPicture) => {
                requests.push(Request::Show(GenerateJob {
                    prompt: recipe.prompt.clone(),
                    seed: recipe.seed,
                    params: recipe.sampling.clone(),
                    point: recipe.point.clone(),
                    noise: recipe.noise.clone(),
                    edits: recipe.edits.clone(),
                }));
                self.notice = Some(("opened in the Picture tab".into(), false));
            }
            None => {}
        }
        if !open {
            self.open = None;
        }
    }

    /// The worker accepted (or refused, `None`) the request made last.
    pub fn started(&mut self, id: Option<JobId>) {
        if id.is_none() {
            self.notice = Some(("the worker did not take the job".into(), true));
        }
        self.jobs.started(id);
    }

    /// Whether `id` is a job of this panel.
    pub fn owns(&self, id: JobId) -> bool {
        self.jobs.owns(id)
    }

    /// An event of one of this panel's jobs.
    pub fn apply(&mut self, ctx: &egui::Context, event: Event) {
        match event {
            Event::Tile {
                id,
                index,
                picture,
                recipe,
                scores,
            } => {
                let side = self.jobs.tile_came(id, index).unwrap_or(0.0);
                self.tiles.insert(Some(ctx), *recipe, picture, scores, side);
            }
            Event::TilesDone { id, elapsed_ms, .. } => {
                self.jobs.ended(id, Ended::Done { elapsed_ms })
            }
            Event::Cancelled { id } => self.jobs.ended(id, Ended::Cancelled),
            Event::Failed { id, error } => self.jobs.ended(id, Ended::Failed(error)),
            _ => {}
        }
    }
}
