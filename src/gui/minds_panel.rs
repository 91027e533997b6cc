//! The alien-minds tab: the model's modules as a checklist to knock out, randomize or scale,
//! global noise and scale sliders, fading sequences, module sweeps and the concept meter's
//! score against the slider.
//!
//! The edits chosen here hold for every picture the window makes (see [`MindsPanel::edits`]);
//! any change to them makes the picture again at once. The parts live in [`super::minds`]:
//! plain state there, drawn by its `_ui` functions; this file ties them to the worker's jobs.

use std::collections::{HashMap, VecDeque};

use egui::Ui;

use super::jobs::LoadedModel;
use super::minds::runs_ui::{self, RunAction, TileTextures};
use super::minds::settings::MindsSettings;
use super::minds::tree_ui::{self, TreeState};
use super::minds::{
    Concept, MindControls, RunStatus, SequenceRun, SequenceSpec, SweepRun, SweepSpec, TileResult,
    TileSet,
};
use super::panels::{PanelContext, Request};
use crate::engine::model::Component;
use crate::engine::surgery::{ModuleCatalog, WeightEdit};
use crate::recipe::Recipe;
use crate::worker::{Event, JobId, Lane, TilesJob};

/// A tiles job the panel sent: its lane, and for each of the job's recipes the tile it fills.
#[derive(Debug, Clone)]
struct Submitted {
    lane: Lane,
    tiles: Vec<usize>,
}

/// The alien-minds state.
#[derive(Default)]
pub struct MindsPanel {
    controls: MindControls,
    tree: TreeState,
    sequence_spec: SequenceSpec,
    sequence: SequenceRun,
    sweep_spec: SweepSpec,
    sweep: SweepRun,

    // Runtime: jobs on their way and textures of the tiles that came.
    jobs: HashMap<JobId, Submitted>,
    /// Requests handed to the app whose ids have not come back yet, oldest first.
    pending: VecDeque<Submitted>,
    /// The job whose end decides each lane's status.
    active: HashMap<Lane, JobId>,
    sequence_textures: TileTextures,
    sweep_textures: TileTextures,
}

/// The catalog of `component`, when the model has one.
pub fn catalog_of(model: &LoadedModel, component: Component) -> Option<&ModuleCatalog> {
    model.catalogs.iter().find(|c| c.component == component)
}

impl MindsPanel {
    /// Draws the panel; returns the jobs it wants submitted.
    pub fn ui(&mut self, ui: &mut Ui, cx: &PanelContext<'_>) -> Vec<Request> {
        let before = self.controls.edits();
        let mut requests = Vec::new();
        let Some(model) = cx.model else {
            ui.label("The modules appear once a model is loaded.");
            return requests;
        };
        let mut actions = Vec::new();
        egui::ScrollArea::vertical()
            .id_salt("minds-scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        ui.set_width(tree_ui::TREE_WIDTH);
                        tree_ui::modules_ui(ui, model, &mut self.tree, &mut self.controls);
                    });
                    // A vertical separator here would stretch to the whole scroll area.
                    ui.add_space(12.0);
                    ui.vertical(|ui| {
                        runs_ui::picture_ui(ui, cx);
                        ui.add_space(4.0);
                        let num_modules = catalog_of(model, self.controls.global_component)
                            .map_or(0, |c| c.modules.len());
                        runs_ui::sliders_ui(ui, &mut self.controls, num_modules);
                    });
                });
                ui.separator();
                actions.extend(runs_ui::sequence_ui(
                    ui,
                    &mut self.sequence_spec,
                    &self.sequence,
                    &mut self.sequence_textures,
                    &model.score_labels,
                    cx.dialog_open,
                ));
                ui.separator();
                let sweep_modules = catalog_of(model, self.tree.component).map_or(0, |c| {
                    let spec = SweepSpec {
                        filter: self.tree.filter.clone(),
                        ..SweepSpec::default()
                    };
                    spec.modules(c).len()
                });
                actions.extend(runs_ui::sweep_ui(
                    ui,
                    &mut self.sweep_spec,
                    &self.tree,
                    &self.sweep,
                    &mut self.sweep_textures,
                    sweep_modules,
                    cx.dialog_open,
                ));
            });

        for action in actions {
            requests.extend(self.act(action, cx));
        }

        // Any change of the edits (a tick, a slider dragged) makes the picture again; the
        // worker drops the stale one, the newest wins.
        let after = self.controls.edits();
        if after != before
            && let Some(mut job) = cx.settings.to_job()
        {
            job.edits = after;
            requests.push(Request::Generate(job));
        }
        requests
    }

    fn act(&mut self, action: RunAction, cx: &PanelContext<'_>) -> Option<Request> {
        match action {
            RunAction::RunSequence => self.run_sequence(cx),
            RunAction::RunSweep => self.run_sweep(cx),
            RunAction::ResumeSweep => Some(self.resume_sweep()),
            RunAction::CancelSweep => Some(self.cancel_sweep()),
            RunAction::ExportSequence => runs_ui::sequence_mosaic(&self.sequence, cx)
                .map(|m| Request::ExportMosaic(Box::new(m))),
            RunAction::ExportSweep => {
                runs_ui::sweep_mosaic(&self.sweep, cx).map(|m| Request::ExportMosaic(Box::new(m)))
            }
        }
    }

    /// What the panel remembers between runs.
    pub fn settings(&self) -> MindsSettings {
        MindsSettings::of(
            &self.controls,
            &self.tree,
            self.sequence_spec,
            &self.sweep_spec,
        )
    }

    /// Takes up remembered settings (brought into range first); ticks stay as they are.
    pub fn restore(&mut self, settings: MindsSettings) {
        let settings = settings.sanitized();
        settings.apply_to(&mut self.controls);
        self.tree = settings.tree;
        self.sequence_spec = settings.sequence;
        self.sweep_spec = settings.sweep;
    }

    /// Bounds the progressive count by the modules of a freshly loaded model, so a count
    /// remembered from a larger model does not make every picture fail.
    pub fn fit_to_model(&mut self, model: &LoadedModel) {
        let modules =
            catalog_of(model, self.controls.global_component).map_or(0, |c| c.modules.len());
        self.controls.progressive_count = self.controls.progressive_count.min(modules);
    }

    /// The edits every picture is made with now.
    pub fn edits(&self) -> Vec<WeightEdit> {
        self.controls.edits()
    }

    /// Makes `edits` the current edits (a recipe was opened); the panel's controls follow them
    /// where they can express them, and keep the rest as they are.
    pub fn set_edits(&mut self, edits: Vec<WeightEdit>) {
        self.controls.set_edits(&edits);
    }

    /// The ticks and sliders.
    pub fn controls(&self) -> &MindControls {
        &self.controls
    }

    /// The ticks and sliders, for tests and callers that prefill them (the picture is not
    /// made again until the panel draws a change or the user generates).
    pub fn controls_mut(&mut self) -> &mut MindControls {
        &mut self.controls
    }

    /// What the module tree shows (component, filter) and what a new tick does.
    pub fn tree_mut(&mut self) -> &mut TreeState {
        &mut self.tree
    }

    /// What the next sequence will vary.
    pub fn sequence_spec_mut(&mut self) -> &mut SequenceSpec {
        &mut self.sequence_spec
    }

    /// The last sequence asked for.
    pub fn sequence(&self) -> &SequenceRun {
        &self.sequence
    }

    /// What the next sweep does to each module.
    pub fn sweep_spec_mut(&mut self) -> &mut SweepSpec {
        &mut self.sweep_spec
    }

    /// The last sweep asked for.
    pub fn sweep(&self) -> &SweepRun {
        &self.sweep
    }

    /// The recipe of the settings' picture with the panel's edits as they are now.
    fn template(&self, cx: &PanelContext<'_>) -> Option<Recipe> {
        let model = cx.model?;
        let job = cx.settings.to_job()?;
        Some(Recipe {
            edits: self.controls.edits(),
            ..Recipe::for_prompt(model.id.clone(), job.prompt, job.seed, job.params)
        })
    }

    /// Starts the sequence of [`MindsPanel::sequence_spec_mut`] over the current controls.
    /// Tiles of an equal recipe already made are kept.
    pub fn run_sequence(&mut self, cx: &PanelContext<'_>) -> Option<Request> {
        let model = cx.model?;
        let template = self.template(cx)?;
        let spec = self.sequence_spec;
        let num_modules =
            catalog_of(model, self.controls.global_component).map_or(0, |c| c.modules.len());
        let tiles = spec.tiles(
            &template,
            &self.controls,
            num_modules,
            Some(&self.sequence.tiles),
        );
        self.sequence = SequenceRun {
            spec,
            values: spec.values(num_modules),
            tiles,
            concept: Concept::of_prompt(&model.score_labels, &template.prompt),
        };
        self.sequence_textures.clear();
        self.submit_missing(Lane::Sequence)
    }

    /// Starts a sweep of [`MindsPanel::sweep_spec_mut`] over the modules the tree's filter
    /// shows, in the tree's component. Tiles of an equal recipe already made are kept.
    pub fn run_sweep(&mut self, cx: &PanelContext<'_>) -> Option<Request> {
        let model = cx.model?;
        let template = self.template(cx)?;
        let spec = SweepSpec {
            component: self.tree.component,
            filter: self.tree.filter.clone(),
            ..self.sweep_spec.clone()
        };
        let catalog = catalog_of(model, spec.component)?;
        let tiles = spec.tiles(&template, catalog, Some(&self.sweep.tiles));
        self.sweep = SweepRun {
            spec,
            tiles,
            concept: Concept::of_prompt(&model.score_labels, &template.prompt),
        };
        self.sweep_textures.clear();
        self.submit_missing(Lane::Sweep)
    }

    /// Asks again for the sweep's tiles that have not come (after a cancel or a crash).
    pub fn resume_sweep(&mut self) -> Request {
        self.submit_missing(Lane::Sweep)
            .unwrap_or_else(|| self.cancel_sweep())
    }

    /// Stops the sweep: an empty job on its lane supersedes the running one. Tiles made stay.
    pub fn cancel_sweep(&mut self) -> Request {
        self.active.remove(&Lane::Sweep);
        if self.sweep.tiles.status == RunStatus::Running {
            self.sweep.tiles.finish(RunStatus::Cancelled);
        }
        self.pending.push_back(Submitted {
            lane: Lane::Sweep,
            tiles: Vec::new(),
        });
        Request::Tiles(TilesJob {
            lane: Lane::Sweep,
            recipes: Vec::new(),
            score: false,
        })
    }

    /// A job for the lane's missing tiles, or `None` (and the run done) when none is missing.
    fn submit_missing(&mut self, lane: Lane) -> Option<Request> {
        let set = self.tiles_mut(lane);
        let missing = set.missing();
        if missing.is_empty() {
            set.finish(RunStatus::Cancelled);
            return None;
        }
        set.status = RunStatus::Running;
        let recipes = missing.iter().map(|&i| set.recipes[i].clone()).collect();
        self.pending.push_back(Submitted {
            lane,
            tiles: missing,
        });
        Some(Request::Tiles(TilesJob {
            lane,
            recipes,
            score: true,
        }))
    }

    fn tiles_mut(&mut self, lane: Lane) -> &mut TileSet {
        match lane {
            Lane::Sweep => &mut self.sweep.tiles,
            Lane::Sequence | Lane::Navigator => &mut self.sequence.tiles,
        }
    }

    fn concept(&self, lane: Lane) -> Option<usize> {
        match lane {
            Lane::Sweep => self.sweep.concept.as_ref().map(|c| c.index),
            Lane::Sequence | Lane::Navigator => self.sequence.concept.as_ref().map(|c| c.index),
        }
    }

    /// The worker accepted (or refused, `None`) the tiles request made first of those not yet
    /// answered.
    pub fn started(&mut self, id: Option<JobId>) {
        let Some(submitted) = self.pending.pop_front() else {
            return;
        };
        let lane = submitted.lane;
        match id {
            Some(id) => {
                // An empty job only cancels: the lane's status is already set.
                if !submitted.tiles.is_empty() {
                    self.active.insert(lane, id);
                }
                self.jobs.insert(id, submitted);
            }
            None => {
                let set = self.tiles_mut(lane);
                if set.status == RunStatus::Running {
                    set.finish(RunStatus::Failed("the worker refused the job".into()));
                }
            }
        }
    }

    /// Whether `id` is a job of this panel.
    pub fn owns(&self, id: JobId) -> bool {
        self.jobs.contains_key(&id)
    }

    /// An event of one of this panel's jobs.
    pub fn apply(&mut self, _ctx: &egui::Context, event: Event) {
        let id = event.id();
        let Some(submitted) = self.jobs.get(&id) else {
            return;
        };
        let lane = submitted.lane;
        let is_active = self.active.get(&lane) == Some(&id);
        let ends = event.ends_job();
        match event {
            Event::Tile {
                index,
                picture,
                recipe,
                scores,
                ..
            } => {
                let tile = submitted.tiles.get(index).copied();
                let concept = self.concept(lane);
                let score = concept.and_then(|c| scores?.get(c).copied());
                if let Some(tile) = tile {
                    let result = TileResult {
                        picture,
                        recipe: *recipe,
                        score,
                    };
                    self.tiles_mut(lane).store(tile, result);
                }
            }
            Event::TilesDone { .. } | Event::Cancelled { .. } if is_active => {
                self.tiles_mut(lane).finish(RunStatus::Cancelled);
            }
            Event::Failed { error, .. } if is_active => {
                self.tiles_mut(lane).finish(RunStatus::Failed(error));
            }
            _ => {}
        }
        if ends {
            self.jobs.remove(&id);
            if is_active {
                self.active.remove(&lane);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::model::ModelId;
    use crate::engine::pipeline::Picture;
    use crate::engine::variant::Variant;
    use crate::gui::picture_view::PictureView;
    use crate::gui::settings::GenerateSettings;

    fn model() -> LoadedModel {
        let unet = ModuleCatalog::from_shapes(
            Component::Unet,
            ["conv_in.weight", "mid_block.conv.weight", "conv_out.weight"]
                .iter()
                .map(|n| (n.to_string(), vec![1])),
        );
        LoadedModel {
            name: "m".into(),
            default_size: 2,
            variant: Variant::Sd15,
            id: ModelId {
                name: "m".into(),
                weights_hash: "0".into(),
                variant: None,
            },
            catalogs: Arc::new(vec![unet]),
            score_labels: vec!["shirt".into(), "bag".into()],
        }
    }

    fn settings() -> GenerateSettings {
        GenerateSettings {
            prompt: "a bag".into(),
            size: Some([2, 2]),
            ..GenerateSettings::default()
        }
    }

    fn tiles_of(request: Option<Request>) -> Vec<Recipe> {
        match request {
            Some(Request::Tiles(job)) => job.recipes,
            other => panic!("expected a tiles job, got {other:?}"),
        }
    }

    fn tile(id: JobId, index: usize, recipe: &Recipe, scores: Vec<f32>) -> Event {
        Event::Tile {
            id,
            index,
            picture: Picture {
                width: 2,
                height: 2,
                rgb: vec![0; 12],
                non_finite: false,
            },
            recipe: Box::new(recipe.clone()),
            scores: Some(scores),
        }
    }

    #[test]
    fn a_sweep_resumes_after_a_crash_and_a_cancel_with_only_the_missing_tiles() {
        let (model, settings, picture) = (model(), settings(), PictureView::default());
        let cx = PanelContext {
            model: Some(&model),
            settings: &settings,
            edits: &[],
            dialog_open: false,
            picture: &picture,
            last_recipe: None,
        };
        let ctx = egui::Context::default();
        let mut panel = MindsPanel::default();

        // The intact tile and three modules.
        let asked = tiles_of(panel.run_sweep(&cx));
        assert_eq!(asked.len(), 4);
        panel.started(Some(7));
        assert!(panel.owns(7));
        panel.apply(&ctx, tile(7, 0, &asked[0], vec![0.1, 0.9]));
        panel.apply(&ctx, tile(7, 2, &asked[2], vec![0.8, 0.2]));
        panel.apply(
            &ctx,
            Event::Failed {
                id: 7,
                error: "the worker crashed".into(),
            },
        );
        assert!(!panel.owns(7));
        assert!(
            matches!(&panel.sweep().tiles.status, RunStatus::Failed(e) if e.contains("crashed"))
        );
        assert_eq!(
            panel.sweep().tiles.results[0]
                .as_ref()
                .and_then(|r| r.score),
            Some(0.9)
        );

        // Resume asks for tiles 1 and 3 only; the job's indices map back onto them.
        let resumed = tiles_of(Some(panel.resume_sweep()));
        assert_eq!(resumed, vec![asked[1].clone(), asked[3].clone()]);
        panel.started(Some(8));
        panel.apply(&ctx, tile(8, 1, &asked[3], vec![0.5, 0.5]));

        // Cancel: an empty job on the lane; the old job's end changes nothing more.
        match panel.cancel_sweep() {
            Request::Tiles(job) => assert!(job.recipes.is_empty() && job.lane == Lane::Sweep),
            other => panic!("{other:?}"),
        }
        panel.started(Some(9));
        assert_eq!(panel.sweep().tiles.status, RunStatus::Cancelled);
        panel.apply(&ctx, Event::Cancelled { id: 8 });
        panel.apply(
            &ctx,
            Event::TilesDone {
                id: 9,
                count: 0,
                elapsed_ms: 0,
            },
        );
        assert_eq!(panel.sweep().tiles.missing(), vec![1]);

        // Running the same sweep again keeps all three and asks for the last.
        let again = tiles_of(panel.run_sweep(&cx));
        assert_eq!(again, vec![asked[1].clone()]);
        panel.started(Some(10));
        panel.apply(&ctx, tile(10, 0, &asked[1], vec![0.3, 0.7]));
        panel.apply(
            &ctx,
            Event::TilesDone {
                id: 10,
                count: 1,
                elapsed_ms: 0,
            },
        );
        assert_eq!(panel.sweep().tiles.status, RunStatus::Done);
        assert_eq!(panel.sweep().most_needed(1)[0].0, 2);

        // Nothing missing: nothing to ask.
        assert!(panel.run_sweep(&cx).is_none());
        assert_eq!(panel.sweep().tiles.status, RunStatus::Done);
    }

    #[test]
    fn a_refused_job_fails_its_run_and_exports_carry_labels_and_recipes() {
        let (model, settings, picture) = (model(), settings(), PictureView::default());
        let cx = PanelContext {
            model: Some(&model),
            settings: &settings,
            edits: &[],
            dialog_open: false,
            picture: &picture,
            last_recipe: None,
        };
        let ctx = egui::Context::default();
        let mut panel = MindsPanel::default();
        *panel.sequence_spec_mut() = SequenceSpec {
            count: 3,
            ..SequenceSpec::default()
        };
        let asked = tiles_of(panel.run_sequence(&cx));
        panel.started(None);
        assert!(matches!(
            panel.sequence().tiles.status,
            RunStatus::Failed(_)
        ));

        let asked_again = tiles_of(panel.run_sequence(&cx));
        assert_eq!(asked_again, asked);
        panel.started(Some(3));
        for (i, recipe) in asked.iter().enumerate() {
            let mut made = recipe.clone();
            made.non_finite = i == 2;
            panel.apply(&ctx, tile(3, i, &made, vec![0.0, 1.0 - i as f32 * 0.4]));
        }
        assert_eq!(panel.sequence().lost_at().map(|(v, _)| v), Some(2.0));

        let mosaic = runs_ui::sequence_mosaic(panel.sequence(), &cx).expect("a mosaic");
        let labels: Vec<&str> = mosaic.tiles.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, vec!["0%", "1%", "2%"]);
        assert!(mosaic.tiles[2].recipe.non_finite);
        assert_eq!(mosaic.columns, 3);
    }
}
