//! [`ExplorerApp`]: the eframe app. It owns the worker's handle and the runtime state, drains
//! worker events each frame (a bounded number, never waiting), lays out the panels and carries
//! out the [`Action`]s they report.
//!
//! Recipes come in three ways (the "Open recipe…" dialog, a file dropped on the window, recipe
//! JSON pasted while no text field has focus) and all go through
//! [`super::recipe_restore::restore`]. Pictures and mosaics go out through a save dialog; a file
//! that is already there is replaced only after the user says so.

use std::path::PathBuf;

use super::Action;
use super::dialogs::{DialogOutcome, Dialogs, Export};
use super::generate_panel::generate_panel_ui;
use super::jobs::{JobTracker, Outcome, Status};
use super::minds::settings::{MindsSettings, STORAGE_KEY as MINDS_KEY};
use super::minds_panel::MindsPanel;
use super::navigator::settings::{NavigatorSettings, STORAGE_KEY as NAVIGATOR_KEY};
use super::navigator_panel::NavigatorPanel;
use super::panels::{PanelContext, Request, Tab};
use super::picture_view::{PictureView, Shown, ShownKind};
use super::result_panel::{Notice, result_panel_ui, status_line_ui, status_text, toolbar_ui};
use super::settings::{GenerateSettings, STORAGE_KEY};
use crate::engine::pipeline::Picture;
use crate::mosaic::MosaicRecord;
use crate::recipe::Recipe;
use crate::worker::{Event, Frame, Job, Worker};

mod recipes;

/// How many worker events one frame handles at most; the rest wait for the next frame, so a
/// burst of previews cannot stall drawing.
const MAX_EVENTS_PER_FRAME: usize = 64;

/// The key under which eframe stores the open tab.
pub const TAB_KEY: &str = "interconcept.tab";

/// The width of the generate panel, in points.
const GENERATE_PANEL_WIDTH: f32 = 300.0;

/// The explorer window.
pub struct ExplorerApp {
    /// Persisted between runs.
    settings: GenerateSettings,
    /// The open tab, persisted between runs.
    tab: Tab,

    // Runtime handles and state, never persisted.
    worker: Worker,
    jobs: JobTracker,
    view: PictureView,
    dialogs: Dialogs,
    notice: Option<Notice>,
    navigator: NavigatorPanel,
    minds: MindsPanel,
    /// A save that would replace a file, waiting for the user's yes or no.
    replace: Option<(PathBuf, Export)>,
    /// A mosaic that was opened, whose tiles are offered one by one.
    opened_mosaic: Option<(String, Box<MosaicRecord>)>,
    /// When "Paste recipe" was pressed: a paste soon after is a recipe, wherever the focus is.
    awaiting_paste: Option<std::time::Instant>,
}

/// What the picture area should show after a batch of events; only the newest counts.
enum Visual {
    Preview(Frame),
    Finished,
}

impl ExplorerApp {
    /// The app eframe starts: settings from eframe's storage, a worker over `model_dir` that
    /// wakes the window after each event.
    pub fn new(cc: &eframe::CreationContext<'_>, model_dir: PathBuf) -> Self {
        Self::on_device(cc, model_dir, super::pick_device())
    }

    /// As [`ExplorerApp::new`], computing on `device`.
    pub fn on_device(
        cc: &eframe::CreationContext<'_>,
        model_dir: PathBuf,
        device: candle_core::Device,
    ) -> Self {
        let ctx = cc.egui_ctx.clone();
        let worker = Worker::spawn(
            model_dir.clone(),
            device,
            Box::new(move || ctx.request_repaint()),
        );
        let mut app = Self::with_worker(worker, model_dir, GenerateSettings::default());
        if let Some(storage) = cc.storage {
            app.load_persisted(storage);
        }
        app.use_render_state(cc.wgpu_render_state.as_ref());
        app
    }

    /// Takes up what [`eframe::App::save`] stored: the generate settings, the open tab, and
    /// the navigator's and alien-minds tab's controls. What is missing keeps its default.
    pub fn load_persisted(&mut self, storage: &dyn eframe::Storage) {
        if let Some(settings) = eframe::get_value(storage, STORAGE_KEY) {
            self.settings = settings;
        }
        if let Some(tab) = eframe::get_value(storage, TAB_KEY) {
            self.tab = tab;
        }
        if let Some(navigator) = eframe::get_value::<NavigatorSettings>(storage, NAVIGATOR_KEY) {
            self.navigator.restore(navigator);
        }
        if let Some(minds) = eframe::get_value::<MindsSettings>(storage, MINDS_KEY) {
            self.minds.restore(minds);
        }
    }

    /// Draws the navigator's island overlay with the GPU score-field shader when eframe renders
    /// with wgpu (registering its pipeline with `render_state`); with `None` (another renderer,
    /// or a test without one) the overlay is drawn with egui shapes.
    pub fn use_render_state(&mut self, render_state: Option<&eframe::egui_wgpu::RenderState>) {
        if let Some(render_state) = render_state {
            super::navigator::score_field::gpu::register(render_state);
        }
        self.navigator.set_gpu_field(render_state.is_some());
    }

    /// The app over a worker made elsewhere (tests make theirs); asks it to load `model_dir` at
    /// once, so the model's name and default size are known before the first picture.
    pub fn with_worker(mut worker: Worker, model_dir: PathBuf, settings: GenerateSettings) -> Self {
        let mut jobs = JobTracker::default();
        match worker.submit(Job::LoadModel(model_dir)) {
            Ok(id) => jobs.start_load(id),
            Err(error) => jobs.refused(error),
        }
        Self {
            settings,
            tab: Tab::default(),
            worker,
            jobs,
            view: PictureView::default(),
            dialogs: Dialogs::default(),
            notice: None,
            navigator: NavigatorPanel::default(),
            minds: MindsPanel::default(),
            replace: None,
            opened_mosaic: None,
            awaiting_paste: None,
        }
    }

    /// The generate settings (persisted between runs).
    pub fn settings(&self) -> &GenerateSettings {
        &self.settings
    }

    /// The generate settings, for tests and for callers that prefill them.
    pub fn settings_mut(&mut self) -> &mut GenerateSettings {
        &mut self.settings
    }

    /// Where the current work stands.
    pub fn status(&self) -> &Status {
        self.jobs.status()
    }

    /// The status line's text without the model name.
    pub fn status_text(&self) -> String {
        status_text(self.jobs.status())
    }

    /// The last finished picture.
    pub fn last_picture(&self) -> Option<&Picture> {
        self.jobs.finished().map(|f| &f.picture)
    }

    /// The recipe of the last finished picture.
    pub fn last_recipe(&self) -> Option<&Recipe> {
        self.jobs.finished().map(|f| &f.recipe)
    }

    /// What the picture texture holds.
    pub fn shown(&self) -> Option<Shown> {
        self.view.shown()
    }

    /// Whether a model load or a picture is in progress.
    pub fn is_busy(&self) -> bool {
        self.jobs.is_loading() || self.jobs.is_generating()
    }

    /// The open tab.
    pub fn tab(&self) -> Tab {
        self.tab
    }

    /// Opens a tab.
    pub fn set_tab(&mut self, tab: Tab) {
        self.tab = tab;
    }

    /// The navigator tab's state.
    pub fn navigator(&self) -> &NavigatorPanel {
        &self.navigator
    }

    /// The alien-minds tab's state.
    pub fn minds(&self) -> &MindsPanel {
        &self.minds
    }

    /// The alien-minds tab's state, for tests that prefill it.
    pub fn minds_mut(&mut self) -> &mut MindsPanel {
        &mut self.minds
    }

    /// Sends the current settings, with the alien-minds tab's edits, to the worker as a new
    /// picture, superseding any in progress.
    pub fn generate(&mut self) {
        let Some(mut job) = self.settings.to_job() else {
            return;
        };
        job.edits = self.minds.edits();
        self.submit_generate(job);
    }

    fn submit_generate(&mut self, job: crate::worker::GenerateJob) {
        let num_steps = job.params.num_steps;
        self.notice = None;
        match self.worker.submit(Job::Generate(job)) {
            Ok(id) => self.jobs.start_generate(id, num_steps),
            Err(error) => self.jobs.refused(error),
        }
    }

    fn load_model(&mut self, dir: PathBuf) {
        match self.worker.submit(Job::LoadModel(dir)) {
            Ok(id) => self.jobs.start_load(id),
            Err(error) => self.jobs.refused(error),
        }
    }

    /// Handles the events that arrived since the last frame, at most [`MAX_EVENTS_PER_FRAME`].
    fn drain_worker(&mut self, ctx: &egui::Context) {
        let mut visual = None;
        let mut drained = 0;
        while drained < MAX_EVENTS_PER_FRAME {
            let Some(event) = self.worker.try_recv() else {
                break;
            };
            drained += 1;
            tracing::trace!(?drained, "worker event");
            let id = event.id();
            // A model loaded again after a crash reports under the next job's id, which may be
            // a panel's: the tracker must see it all the same.
            let is_load = matches!(event, Event::ModelLoaded { .. });
            if self.navigator.owns(id) && !is_load {
                self.navigator.apply(ctx, event);
                continue;
            }
            if self.minds.owns(id) && !is_load {
                self.minds.apply(ctx, event);
                continue;
            }
            match self.jobs.apply(event) {
                Some(Outcome::ModelLoaded(model)) => {
                    self.settings
                        .adopt_model(&model.name, model.default_size, model.variant);
                    self.minds.fit_to_model(&model);
                }
                Some(Outcome::Preview(frame)) => visual = Some(Visual::Preview(frame)),
                Some(Outcome::Finished) => visual = Some(Visual::Finished),
                None => {}
            }
        }
        if drained == MAX_EVENTS_PER_FRAME {
            ctx.request_repaint();
        }

        // One texture upload per frame, however many previews arrived.
        let uploaded = match visual {
            Some(Visual::Preview(frame)) => self.view.show_rgb(
                ctx,
                ShownKind::Preview,
                [frame.width, frame.height],
                &frame.rgb,
            ),
            Some(Visual::Finished) => match self.jobs.finished() {
                Some(finished) => {
                    let picture = &finished.picture;
                    self.view.show_rgb(
                        ctx,
                        ShownKind::Finished,
                        [picture.width, picture.height],
                        &picture.rgb,
                    )
                }
                None => Ok(()),
            },
            None => Ok(()),
        };
        if let Err(error) = uploaded {
            tracing::warn!("picture not shown: {error}");
        }
    }

    fn drain_dialogs(&mut self, ctx: &egui::Context) {
        let Some(outcome) = self.dialogs.try_recv() else {
            return;
        };
        match outcome {
            DialogOutcome::ModelFolder(Some(dir)) => self.load_model(dir),
            DialogOutcome::RecipeFile(Some(path)) => self.open_recipe_file(&path),
            DialogOutcome::SavePath(Some((path, export))) => self.save_chosen(ctx, path, export),
            DialogOutcome::Saved(Ok((path, what))) => {
                tracing::info!(path = %path.display(), "{what} saved");
                self.notice = Some(Notice {
                    text: format!("saved {}", path.display()),
                    is_error: false,
                });
            }
            DialogOutcome::Saved(Err(error)) => {
                tracing::error!("{error}");
                self.notice = Some(Notice {
                    text: error,
                    is_error: true,
                });
            }
            DialogOutcome::ModelFolder(None)
            | DialogOutcome::RecipeFile(None)
            | DialogOutcome::SavePath(None) => {}
        }
    }

    fn act(&mut self, ctx: &egui::Context, action: Action) {
        match action {
            Action::Generate => self.generate(),
            Action::LoadModelFolder => self.dialogs.pick_model_folder(ctx),
            Action::SavePng => {
                if let Some(finished) = self.jobs.finished() {
                    let name = format!("interconcept-{}.png", finished.recipe.seed);
                    let export = Export::Picture {
                        picture: finished.picture.clone(),
                        recipe_json: finished.recipe.to_json(),
                    };
                    self.dialogs.choose_save_path(ctx, export, name);
                }
            }
            Action::OpenRecipe => self.dialogs.pick_recipe(ctx),
            Action::PasteRecipe => {
                // The integration answers with a paste event, read in `take_input`.
                self.awaiting_paste = Some(std::time::Instant::now());
                ctx.send_viewport_cmd(egui::ViewportCommand::RequestPaste);
            }
            Action::CopyRecipe => {
                if let Some(finished) = self.jobs.finished() {
                    ctx.copy_text(finished.recipe.to_json());
                    self.notice = Some(Notice {
                        text: "recipe copied".into(),
                        is_error: false,
                    });
                }
            }
        }
    }

    /// Submits a panel's request: a picture goes to the picture tab's tracker (the panel does
    /// not own it), tiles to the panel that asked.
    fn submit_request(&mut self, ctx: &egui::Context, from: Tab, request: Request) {
        match request {
            Request::Generate(job) => self.submit_generate(job),
            Request::Show(job) => {
                self.submit_generate(job);
                self.tab = Tab::Picture;
            }
            Request::ExportMosaic(mosaic) => {
                if self.dialogs.is_open() || self.replace.is_some() {
                    self.notice = Some(Notice {
                        text: "finish the open dialog first".into(),
                        is_error: true,
                    });
                } else {
                    let name = format!("interconcept-mosaic-{}.png", mosaic.tiles.len());
                    self.dialogs
                        .choose_save_path(ctx, Export::Mosaic(mosaic), name);
                }
            }
            Request::Tiles(job) => {
                let submitted = self.worker.submit(crate::worker::Job::Tiles(job));
                let id = match submitted {
                    Ok(id) => Some(id),
                    Err(error) => {
                        self.notice = Some(Notice {
                            text: error,
                            is_error: true,
                        });
                        None
                    }
                };
                match from {
                    Tab::Navigator => self.navigator.started(id),
                    Tab::Minds | Tab::Picture => self.minds.started(id),
                }
            }
        }
    }

    /// Whether the picture on screen is a finished one that can be saved or copied.
    fn can_export(&self) -> bool {
        let finished_on_screen = self
            .view
            .shown()
            .is_some_and(|s| s.kind == ShownKind::Finished);
        finished_on_screen
            && self.jobs.finished().is_some()
            && !self.dialogs.is_open()
            && self.replace.is_none()
    }
}

impl eframe::App for ExplorerApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain_worker(ctx);
        self.drain_dialogs(ctx);
        self.take_input(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let mut actions = Vec::new();
        let can_generate = self.jobs.model().is_some();
        let can_export = self.can_export();
        let dialog_open = self.dialogs.is_open() || self.replace.is_some();

        egui::Panel::top("toolbar").show(ui, |ui| {
            ui.horizontal(|ui| {
                actions.extend(toolbar_ui(ui, !dialog_open));
                ui.separator();
                for tab in Tab::ALL {
                    ui.selectable_value(&mut self.tab, tab, tab.title());
                }
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| {
            status_line_ui(ui, &self.jobs, self.notice.as_ref());
        });
        egui::Panel::left("generate")
            .resizable(false)
            .exact_size(GENERATE_PANEL_WIDTH)
            .show(ui, |ui| {
                actions.extend(generate_panel_ui(ui, &mut self.settings, can_generate));
            });
        let mut requests = Vec::new();
        let edits = self.minds.edits();
        egui::CentralPanel::default().show(ui, |ui| {
            let cx = PanelContext {
                model: self.jobs.model(),
                settings: &self.settings,
                edits: &edits,
                dialog_open,
                picture: &self.view,
                last_recipe: self.jobs.finished().map(|f| &f.recipe),
            };
            match self.tab {
                Tab::Picture => {
                    actions.extend(result_panel_ui(ui, &self.view, &self.jobs, can_export));
                }
                Tab::Navigator => {
                    requests.extend(
                        self.navigator
                            .ui(ui, &cx)
                            .into_iter()
                            .map(|r| (Tab::Navigator, r)),
                    );
                }
                Tab::Minds => {
                    requests.extend(self.minds.ui(ui, &cx).into_iter().map(|r| (Tab::Minds, r)));
                }
            }
        });

        let ctx = ui.ctx().clone();
        for action in actions {
            self.act(&ctx, action);
        }
        for (from, request) in requests {
            self.submit_request(&ctx, from, request);
        }
        self.replace_ui(&ctx);
        self.opened_mosaic_ui(&ctx);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.settings);
        eframe::set_value(storage, TAB_KEY, &self.tab);
        eframe::set_value(storage, NAVIGATOR_KEY, &self.navigator.settings());
        eframe::set_value(storage, MINDS_KEY, &self.minds.settings());
    }
}
