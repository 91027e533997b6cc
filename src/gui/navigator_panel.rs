//! The navigator tab: a plane (or line) through concept space around the prompt, drawn as a
//! zoomable canvas of tiles made by the worker, with the concept meter's island overlaid, and a
//! gallery of random points of interconcept space.
//!
//! State only changes through [`NavigatorPanel::ui`] (what the user did) and
//! [`NavigatorPanel::apply`] (what the worker reported for the panel's jobs). The parts live in
//! [`super::navigator`].

use egui::{DragValue, Ui};

use super::navigator::canvas::{CanvasClick, Overlay, PlacedTile, plane_canvas_ui};
use super::navigator::detail::{DetailAction, Slot, tile_window_ui, tiles_grid_ui};
use super::navigator::recipes::{
    Controls, MAX_BEYOND, MAX_GALLERY, MAX_LINE_POINTS, Mode, gallery_tiles, island_field,
    layout_mosaic, line_tiles, plane_coordinates, plane_mosaic, plane_recipe, plane_title,
};
use super::navigator::score_field::FieldTexture;
use super::navigator::settings::NavigatorSettings;
use super::navigator::status::{island_report_ui, status_ui};
use super::navigator::tiles::{Asked, Ended, JobBook, Purpose, TileStore};
use super::navigator::view::{FillGrid, PlaneView};
use super::panels::{PanelContext, Request};
use crate::engine::scoring::label_in;
use crate::mosaic::Mosaic;
use crate::navigator::island::{ISLAND_THRESHOLD, IslandRadii, boundary, island_radii};
use crate::navigator::{Layout, describe};
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

    fn plane_ui(
        &mut self,
        ui: &mut Ui,
        cx: &PanelContext<'_>,
        template: &Recipe,
        labels: &[String],
        requests: &mut Vec<Request>,
    ) {
        let plane = &mut self.controls.plane;
        ui.horizontal(|ui| {
            ui.radio_value(&mut plane.toward, false, "random directions");
            let seed = ui.label("seed");
            ui.add_enabled(!plane.toward, DragValue::new(&mut plane.directions_seed))
                .labelled_by(seed.id);
            ui.radio_value(&mut plane.toward, true, "toward");
            for (text, hint) in [
                (&mut plane.toward_a, "prompt a (u = 1)"),
                (&mut plane.toward_b, "prompt b"),
            ] {
                ui.add_enabled(
                    plane.toward,
                    egui::TextEdit::singleline(text)
                        .hint_text(hint)
                        .desired_width(110.0),
                );
            }
        });
        let mut fill = false;
        ui.horizontal(|ui| {
            let grid = ui.label("grid");
            ui.add(DragValue::new(&mut plane.grid).range(1..=MAX_FILL))
                .labelled_by(grid.id)
                .on_hover_text("tiles along each side of a fill");
            fill = ui
                .button("Fill")
                .on_hover_text("make a grid over the middle of the view, centre first")
                .clicked();
            if ui.button("Reset view").clicked() {
                self.view = PlaneView::default();
            }
            ui.checkbox(&mut plane.island, "Island")
                .on_hover_text("colour tiles by the meter's score and draw where it crosses 0.5");
            if plane.island && !labels.is_empty() {
                let named = label_in(labels, &template.prompt);
                let shown = plane.concept.or(named).and_then(|i| labels.get(i));
                egui::ComboBox::from_label("concept")
                    .selected_text(shown.map_or("choose a concept", String::as_str))
                    .show_ui(ui, |ui| {
                        for (i, label) in labels.iter().enumerate() {
                            ui.selectable_value(&mut plane.concept, Some(i), label);
                        }
                    });
            }
        });

        // The tiles of this plane, and the ones on their way.
        let directions = plane.directions();
        let concept = plane.concept.or_else(|| label_in(labels, &template.prompt));
        let mut placed: Vec<PlacedTile<'_>> = self
            .tiles
            .iter()
            .filter_map(|tile| {
                let at = plane_coordinates(&tile.recipe, template, &directions)?;
                let score = tile.score(concept);
                Some(PlacedTile {
                    at,
                    side: tile.side,
                    tile,
                    score,
                })
            })
            .collect();
        // Finer tiles (made zoomed in) are drawn over coarser ones.
        placed.sort_by(|a, b| b.side.total_cmp(&a.side));
        let pending: Vec<([f64; 2], f64)> = self
            .jobs
            .missing()
            .iter()
            .filter_map(|(r, side)| Some((plane_coordinates(r, template, &directions)?, *side)))
            .collect();

        // The island, on the lattice of the newest fill.
        let grid = self
            .last_grid
            .unwrap_or_else(|| self.view.fill_grid(plane.grid));
        let scored: Vec<([f64; 2], f64)> = placed
            .iter()
            .filter_map(|t| Some((t.at, f64::from(t.score?))))
            .collect();
        let field = island_field(&scored, &grid);
        let texture = match (&field, plane.island && self.gpu_field) {
            (Some(field), true) => FieldTexture::from_field(field, grid.spacing),
            _ => None,
        };
        let shore = match (&field, plane.island, &texture) {
            (Some(field), true, None) => boundary(field, ISLAND_THRESHOLD),
            _ => Vec::new(),
        };
        self.island = match (&field, concept.and_then(|i| labels.get(i))) {
            (Some(field), Some(label)) => {
                Some((label.clone(), island_radii(field, ISLAND_THRESHOLD)))
            }
            _ => None,
        };

        let (cancel, export) = status_ui(
            ui,
            cx,
            &self.jobs,
            !self.tiles.is_empty(),
            self.notice.as_ref(),
        );
        if plane.island {
            island_report_ui(ui, self.island.as_ref(), labels.is_empty(), plane.unit());
        }
        let size = ui.available_size().max(MIN_CANVAS);
        let overlay = Overlay {
            pending: &pending,
            island: plane.island,
            shore: &shore,
            field: texture.as_ref(),
            unit: plane.unit(),
        };
        let canvas = plane_canvas_ui(ui, size, &mut self.view, &placed, &overlay);
        self.drawn = canvas.drawn;

        // What the user asked for.
        let spacing = self.view.fill_grid(plane.grid).spacing;
        match canvas.click {
            Some(CanvasClick::Tile(index)) => self.open = Some(placed[index].tile.recipe.clone()),
            Some(CanvasClick::Point(at)) => {
                // The clicked point first, then what the running job still owed.
                let mut asked = Asked {
                    purpose: Purpose::Point,
                    recipes: vec![plane_recipe(template, &directions, at)],
                    sides: vec![spacing],
                };
                for (recipe, side) in self.jobs.missing() {
                    asked.recipes.push(recipe);
                    asked.sides.push(side);
                }
                requests.push(self.jobs.ask(asked));
            }
            None => {}
        }
        let export = export.then(|| {
            let [[u_lo, u_hi], [v_lo, v_hi]] = self.view.visible(ui.min_rect());
            let in_view: Vec<([f64; 2], &_)> = placed
                .iter()
                .filter(|t| (u_lo..=u_hi).contains(&t.at[0]) && (v_lo..=v_hi).contains(&t.at[1]))
                .map(|t| (t.at, t.tile))
                .collect();
            plane_mosaic(plane_title(template, &self.controls.plane), &in_view)
        });
        drop(placed);
        if fill {
            let grid = self.view.fill_grid(self.controls.plane.grid);
            let recipes: Vec<Recipe> = grid
                .points_centre_first()
                .into_iter()
                .map(|at| plane_recipe(template, &directions, at))
                .filter(|r| self.tiles.find(r).is_none())
                .collect();
            self.last_grid = Some(grid);
            if recipes.is_empty() {
                self.notice = Some(("every tile of this grid is made already".into(), false));
            } else {
                let sides = vec![grid.spacing; recipes.len()];
                requests.push(self.jobs.ask(Asked {
                    purpose: Purpose::Fill,
                    recipes,
                    sides,
                }));
            }
        }
        self.finish(cancel, export, requests);
    }

    fn strip_ui(
        &mut self,
        ui: &mut Ui,
        cx: &PanelContext<'_>,
        template: &Recipe,
        labels: &[String],
        requests: &mut Vec<Request>,
    ) {
        let mut make = false;
        let is_line = self.controls.mode == Mode::Line;
        let concept;
        if is_line {
            let line = &mut self.controls.line;
            ui.horizontal(|ui| {
                let hint = format!("from: {}", template.prompt);
                ui.add(
                    egui::TextEdit::singleline(&mut line.from)
                        .hint_text(hint)
                        .desired_width(130.0),
                );
                ui.add(
                    egui::TextEdit::singleline(&mut line.to)
                        .hint_text("to")
                        .desired_width(130.0),
                );
                let points = ui.label("points");
                ui.add(DragValue::new(&mut line.points).range(2..=MAX_LINE_POINTS))
                    .labelled_by(points.id);
                let beyond = ui.label("beyond");
                ui.add(
                    DragValue::new(&mut line.beyond)
                        .range(0.0..=MAX_BEYOND)
                        .speed(0.05),
                )
                .labelled_by(beyond.id)
                .on_hover_text("how far past each end, in lengths of the line");
                ui.checkbox(&mut line.slerp, "slerp");
                make = ui.button("Make line").clicked();
            });
            let from = if line.from.trim().is_empty() {
                &template.prompt
            } else {
                &line.from
            };
            concept = label_in(labels, from);
        } else {
            let gallery = &mut self.controls.gallery;
            ui.horizontal(|ui| {
                let count = ui.label("count");
                ui.add(DragValue::new(&mut gallery.count).range(1..=MAX_GALLERY))
                    .labelled_by(count.id);
                let seed = ui.label("first seed");
                ui.add(DragValue::new(&mut gallery.first_seed))
                    .labelled_by(seed.id);
                make = ui.button("Make gallery").clicked();
            });
            egui::CollapsingHeader::new("Reference prompts (their statistics shape the points)")
                .show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .max_height(120.0)
                        .show(ui, |ui| {
                            ui.text_edit_multiline(&mut gallery.reference);
                        });
                });
            concept = None;
        }
        let layout: anyhow::Result<Layout> = if is_line {
            line_tiles(template, &self.controls.line)
        } else {
            gallery_tiles(template, &self.controls.gallery)
        };
        let (cancel, export) = status_ui(
            ui,
            cx,
            &self.jobs,
            !self.tiles.is_empty(),
            self.notice.as_ref(),
        );
        let layout = match layout {
            Ok(layout) => layout,
            Err(error) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("{error:#}"));
                return;
            }
        };
        let made: Vec<_> = layout
            .tiles
            .iter()
            .map(|t| self.tiles.find(&t.recipe))
            .collect();
        let slots: Vec<Slot<'_>> = layout
            .tiles
            .iter()
            .zip(&made)
            .map(|(slot, tile)| {
                let mut label = if is_line {
                    format!("t={}", slot.label)
                } else {
                    slot.label.clone()
                };
                // The gallery names what the meter sees in each random point.
                if !is_line && let Some(scores) = tile.and_then(|t| t.scores.as_ref()) {
                    let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
                    if let Some((i, _)) = best
                        && let Some(name) = labels.get(i)
                    {
                        label = format!("{label} {name}");
                    }
                }
                Slot {
                    label,
                    tile: *tile,
                    score: tile.and_then(|t| t.score(concept)),
                }
            })
            .collect();
        let clicked = egui::ScrollArea::both()
            .show(ui, |ui| {
                let (columns, side) = if is_line {
                    (slots.len(), 96.0)
                } else {
                    (layout.columns, 80.0)
                };
                tiles_grid_ui(ui, &slots, columns, side)
            })
            .inner;
        if let Some(index) = clicked {
            self.open = made[index].map(|t| t.recipe.clone());
        }
        let export = export.then(|| layout_mosaic(&layout, &made));
        drop(slots);
        if make {
            let recipes: Vec<Recipe> = layout
                .tiles
                .iter()
                .map(|t| t.recipe.clone())
                .filter(|r| self.tiles.find(r).is_none())
                .collect();
            if recipes.is_empty() {
                self.notice = Some(("every tile is made already".into(), false));
            } else {
                let purpose = if is_line {
                    Purpose::Line
                } else {
                    Purpose::Gallery
                };
                let sides = vec![0.0; recipes.len()];
                requests.push(self.jobs.ask(Asked {
                    purpose,
                    recipes,
                    sides,
                }));
            }
        }
        self.finish(cancel, export, requests);
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
        let place = recipe
            .point
            .as_deref()
            .map_or_else(|| format!("{:?}", recipe.prompt), describe);
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
