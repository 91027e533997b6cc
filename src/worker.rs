//! The background worker: one named thread that owns every candle object.
//!
//! The GUI (or a test) sends [`Job`]s over a bounded channel and drains [`Event`]s without ever
//! blocking. Jobs carry an id; a newer job of the same kind supersedes the one running, which is
//! cancelled between two denoising steps. A job that fails reports its error; a job that panics
//! takes the worker thread down with it, and the next job starts a fresh one.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::engine::EngineError;
use crate::engine::model::{Component, DiffusionModel, ModelId};
use crate::engine::pipeline::{self, Picture, SamplingParams};
use crate::engine::scoring::{ConceptScorer, scorer_for};
use crate::engine::space::{ConceptPoint, NoisePoint, Resolver, default_batch_size, resolve_noise};
use crate::engine::surgery::{ModuleCatalog, WeightEdit, catalog};
use crate::engine::variant::Variant;
use crate::navigator::{TileCache, hold_edits, render_recipes};
use crate::recipe::Recipe;

/// Identifies a job and every event it causes.
pub type JobId = u64;

/// How many jobs may wait; more are refused rather than queued without bound.
const JOB_QUEUE: usize = 16;

/// How many events may wait for the GUI; previews are dropped when it is full.
const EVENT_QUEUE: usize = 256;

/// One picture to make.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateJob {
    /// The prompt; empty for unconditional generation. With a `point`, the prompt the point is
    /// anchored at.
    pub prompt: String,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Steps, guidance, sampler, size.
    pub params: SamplingParams,
    /// Where in concept space; `None` is the prompt's own point.
    pub point: Option<Box<ConceptPoint>>,
    /// Where in initial-noise space the picture starts; `None` is the noise of `seed`.
    pub noise: Option<Box<NoisePoint>>,
    /// Edits to the weights, applied (to the loaded weights) before the picture is made.
    pub edits: Vec<WeightEdit>,
}

impl GenerateJob {
    /// A picture of a prompt's own point on the loaded weights.
    pub fn prompt(prompt: impl Into<String>, seed: u64, params: SamplingParams) -> Self {
        Self {
            prompt: prompt.into(),
            seed,
            params,
            point: None,
            noise: None,
            edits: Vec::new(),
        }
    }
}

/// Which grid a [`TilesJob`] fills. Each lane supersedes only its own jobs, so a navigator
/// fill and a module sweep can be on the way together (they take turns on the one thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The navigator's plane, line and random gallery.
    Navigator,
    /// The alien-minds panel's fading sequences.
    Sequence,
    /// The alien-minds panel's module sweeps.
    Sweep,
}

impl Lane {
    /// Every lane.
    pub const ALL: [Lane; 3] = [Lane::Navigator, Lane::Sequence, Lane::Sweep];

    fn index(self) -> usize {
        match self {
            Lane::Navigator => 0,
            Lane::Sequence => 1,
            Lane::Sweep => 2,
        }
    }
}

/// Many pictures, each given by its whole recipe (prompt or point, noise, sampling, edits),
/// made in batches and reported one [`Event::Tile`] at a time, in the order they finish.
#[derive(Debug, Clone)]
pub struct TilesJob {
    /// Which grid they fill.
    pub lane: Lane,
    /// The pictures to make; their model must be the loaded one.
    pub recipes: Vec<Recipe>,
    /// Score every tile with the model's concept scorer, when it has one.
    pub score: bool,
}

/// Work for the worker.
#[derive(Debug, Clone)]
pub enum Job {
    /// Load (or switch to) a model folder.
    LoadModel(PathBuf),
    /// Make one picture, streaming previews.
    Generate(GenerateJob),
    /// Make many pictures, a tile at a time.
    Tiles(TilesJob),
    /// Panic on purpose: lets tests check that the worker survives.
    #[doc(hidden)]
    Crash,
}

/// Kinds of jobs that supersede each other: loads, pictures, and one per [`Lane`].
const KINDS: usize = 2 + Lane::ALL.len();

impl Job {
    /// Jobs of the same kind supersede each other.
    fn kind(&self) -> usize {
        match self {
            Job::LoadModel(_) => 0,
            Job::Generate(_) | Job::Crash => 1,
            Job::Tiles(job) => 2 + job.lane.index(),
        }
    }
}

/// A preview or result image, RGB8.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major RGB8.
    pub rgb: Vec<u8>,
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// A model is loaded and ready.
    ModelLoaded {
        /// The job that loaded it.
        id: JobId,
        /// Its name.
        name: String,
        /// The side of the pictures it was trained for.
        default_size: usize,
        /// Which Stable Diffusion it is (the Turbo models want other step and guidance defaults).
        variant: Variant,
        /// Its identity, for the recipes the GUI writes.
        model: ModelId,
        /// The modules of its text encoder, UNet and VAE, in [`Component::ALL`] order.
        catalogs: Arc<Vec<ModuleCatalog>>,
        /// The concepts its pictures can be scored for (empty: no scorer).
        score_labels: Vec<String>,
    },
    /// Step `step` of `num_steps` is done.
    Progress {
        /// The job.
        id: JobId,
        /// Steps done.
        step: usize,
        /// Steps in the run.
        num_steps: usize,
    },
    /// A cheap projection of the current latent.
    Preview {
        /// The job.
        id: JobId,
        /// The preview picture (latent resolution).
        frame: Frame,
    },
    /// The decoded picture and its recipe.
    Finished {
        /// The job.
        id: JobId,
        /// The picture.
        picture: Picture,
        /// What makes it again.
        recipe: Recipe,
        /// Wall time of the job.
        elapsed_ms: u64,
    },
    /// One picture of a [`TilesJob`].
    Tile {
        /// The job.
        id: JobId,
        /// Which of the job's recipes.
        index: usize,
        /// The picture.
        picture: Picture,
        /// Its recipe (with `non_finite` set when the model blew up).
        recipe: Box<Recipe>,
        /// Its probability per score label, when scoring was asked for and is available.
        scores: Option<Vec<f32>>,
    },
    /// Every tile of a [`TilesJob`] has been reported.
    TilesDone {
        /// The job.
        id: JobId,
        /// Tiles made (cached ones included).
        count: usize,
        /// Wall time of the job.
        elapsed_ms: u64,
    },
    /// The job was superseded by a newer one.
    Cancelled {
        /// The job.
        id: JobId,
    },
    /// The job failed; the message is for the user.
    Failed {
        /// The job.
        id: JobId,
        /// What went wrong.
        error: String,
    },
}

impl Event {
    /// The job the event belongs to.
    pub fn id(&self) -> JobId {
        match self {
            Event::ModelLoaded { id, .. }
            | Event::Progress { id, .. }
            | Event::Preview { id, .. }
            | Event::Finished { id, .. }
            | Event::Tile { id, .. }
            | Event::TilesDone { id, .. }
            | Event::Cancelled { id }
            | Event::Failed { id, .. } => *id,
        }
    }

    /// Whether this is the last event of its job.
    pub fn ends_job(&self) -> bool {
        matches!(
            self,
            Event::Finished { .. }
                | Event::TilesDone { .. }
                | Event::Cancelled { .. }
                | Event::Failed { .. }
        )
    }
}

/// The GUI's side of the worker.
pub struct Worker {
    jobs: Sender<(JobId, Job)>,
    events: Receiver<Event>,
    /// Kept to start a fresh worker thread after a panic.
    shared: Arc<Shared>,
    events_tx: Sender<Event>,
    jobs_rx: Receiver<(JobId, Job)>,
    thread: Option<std::thread::JoinHandle<()>>,
    next_id: JobId,
}

/// State both sides read.
struct Shared {
    /// The newest job id of each kind: a running job older than this is cancelled.
    latest: [AtomicU64; KINDS],
    /// Called after each event so the GUI wakes up.
    wake: Box<dyn Fn() + Send + Sync>,
    default_model: PathBuf,
    device: Device,
}

impl Worker {
    /// Starts a worker that loads `model_dir` on its first job. `wake` is called after every
    /// event (the GUI passes `ctx.request_repaint`).
    pub fn spawn(model_dir: PathBuf, device: Device, wake: Box<dyn Fn() + Send + Sync>) -> Self {
        let (jobs, jobs_rx) = bounded(JOB_QUEUE);
        let (events_tx, events) = bounded(EVENT_QUEUE);
        let shared = Arc::new(Shared {
            latest: std::array::from_fn(|_| AtomicU64::new(0)),
            wake,
            default_model: model_dir,
            device,
        });
        let mut worker = Self {
            jobs,
            events,
            shared,
            events_tx,
            jobs_rx,
            thread: None,
            next_id: 1,
        };
        worker.start_thread();
        worker
    }

    fn start_thread(&mut self) {
        let shared = Arc::clone(&self.shared);
        let jobs = self.jobs_rx.clone();
        let events = self.events_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("interconcept-worker".into())
            .spawn(move || run(&shared, &jobs, &events));
        match spawned {
            Ok(handle) => self.thread = Some(handle),
            Err(e) => tracing::error!("cannot start the worker thread: {e}"),
        }
    }

    /// Sends a job; returns its id, or an error when the queue is full.
    pub fn submit(&mut self, job: Job) -> Result<JobId, String> {
        // A worker that died (a panic) is replaced before the job is sent.
        if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            self.thread = None;
            self.start_thread();
        }
        let id = self.next_id;
        self.next_id += 1;
        let kind = job.kind();
        // Marking the job as newest cancels the running one; undo that if the job is refused.
        let previous = self.shared.latest[kind].swap(id, Ordering::SeqCst);
        let refused = match self.jobs.try_send((id, job)) {
            Ok(()) => return Ok(id),
            Err(TrySendError::Full(_)) => "the worker is busy: too many jobs waiting",
            Err(TrySendError::Disconnected(_)) => "the worker has stopped",
        };
        let _ = self.shared.latest[kind].compare_exchange(
            id,
            previous,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        Err(refused.into())
    }

    /// The next event, if any; never blocks.
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Waits for the next event (for the command line and tests).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }
}

/// What the worker thread keeps between jobs.
struct State {
    model: Option<DiffusionModel>,
    model_dir: PathBuf,
    /// The edits the model's weights hold now.
    applied: Vec<WeightEdit>,
    /// Pictures of tile jobs already made (their recipes include the model and edits).
    cache: TileCache,
    /// Prompt encodings of the loaded, unedited text encoder.
    resolver: Resolver,
    scorer: Option<Box<dyn ConceptScorer>>,
}

impl State {
    fn new(model_dir: PathBuf) -> Self {
        Self {
            model: None,
            model_dir,
            applied: Vec::new(),
            cache: TileCache::default(),
            resolver: Resolver::new(),
            scorer: None,
        }
    }

    /// Loads `dir`, reports it under job `id`, and takes it: everything remembered of the last
    /// model goes.
    fn load_model(
        &mut self,
        shared: &Shared,
        dir: PathBuf,
        id: JobId,
        send: &dyn Fn(Event),
    ) -> Result<(), JobError> {
        let model = load(&dir, &shared.device)?;
        let scorer = scorer_for(&model);
        send(loaded_event(id, &model, scorer.as_deref()));
        self.scorer = scorer;
        self.model = Some(model);
        self.model_dir = dir;
        self.applied.clear();
        self.cache = TileCache::default();
        self.resolver = Resolver::new();
        Ok(())
    }

    /// The model, loading the last folder again when there is none (after a panic).
    fn model(
        &mut self,
        shared: &Shared,
        id: JobId,
        send: &dyn Fn(Event),
    ) -> Result<&mut DiffusionModel, JobError> {
        if self.model.is_none() {
            self.load_model(shared, self.model_dir.clone(), id, send)?;
        }
        self.model
            .as_mut()
            .ok_or_else(|| JobError::Failed("no model is loaded".into()))
    }

    /// Makes the weights hold exactly `edits` (see [`hold_edits`]).
    fn set_edits(&mut self, edits: &[WeightEdit]) -> Result<(), JobError> {
        let Some(model) = self.model.as_mut() else {
            return Err(JobError::Failed("no model is loaded".into()));
        };
        hold_edits(model, &mut self.applied, &mut self.resolver, edits)?;
        Ok(())
    }
}

fn loaded_event(id: JobId, m: &DiffusionModel, scorer: Option<&dyn ConceptScorer>) -> Event {
    Event::ModelLoaded {
        id,
        name: m.id.name.clone(),
        default_size: m.default_size,
        variant: m.variant,
        model: m.id.clone(),
        catalogs: Arc::new(
            Component::ALL
                .iter()
                .map(|&component| catalog(m, component))
                .collect(),
        ),
        score_labels: scorer.map(|s| s.labels().to_vec()).unwrap_or_default(),
    }
}

/// The worker thread's loop.
///
/// Each job runs under `catch_unwind`: a panic (a bug, or an assertion deep in candle) becomes a
/// failure event, the model that was in use is dropped, since a panic in the middle of a weight
/// edit could leave it half changed, and the next job starts afresh by loading the last model
/// folder again.
fn run(shared: &Shared, jobs: &Receiver<(JobId, Job)>, events: &Sender<Event>) {
    let mut state = State::new(shared.default_model.clone());
    let send = |event: Event| {
        // A full queue drops previews rather than blocking the worker.
        let blocking = !matches!(event, Event::Preview { .. } | Event::Progress { .. });
        let _ = if blocking {
            events.send(event).map_err(|_| ())
        } else {
            events.try_send(event).map_err(|_| ())
        };
        (shared.wake)();
    };

    while let Ok((id, job)) = jobs.recv() {
        // A newer job of the same kind already waits: skip this one.
        if shared.latest[job.kind()].load(Ordering::SeqCst) > id {
            send(Event::Cancelled { id });
            continue;
        }
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(shared, id, job, &mut state, &send, started)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(JobError::Cancelled)) => send(Event::Cancelled { id }),
            Ok(Err(JobError::Failed(error))) => send(Event::Failed { id, error }),
            Err(_) => {
                state = State::new(state.model_dir.clone());
                tracing::error!(id, "a job panicked; the model will be loaded again");
                send(Event::Failed {
                    id,
                    error: "the worker crashed; a fresh worker will take the next job".into(),
                });
            }
        }
    }
}

/// Runs one job over the worker's state.
fn run_job(
    shared: &Shared,
    id: JobId,
    job: Job,
    state: &mut State,
    send: &dyn Fn(Event),
    started: Instant,
) -> Result<(), JobError> {
    let kind = job.kind();
    let is_stale = || shared.latest[kind].load(Ordering::SeqCst) > id;
    match job {
        Job::LoadModel(dir) => state.load_model(shared, dir, id, send),
        Job::Generate(job) => {
            state.model(shared, id, send)?;
            state.set_edits(&job.edits)?;
            generate(state, id, &job, &is_stale, send, started)
        }
        Job::Tiles(job) => {
            state.model(shared, id, send)?;
            tiles(state, id, job, &is_stale, send, started)
        }
        Job::Crash => panic!("crash requested"),
    }
}

/// How a job ends when it does not finish.
enum JobError {
    /// Superseded by a newer job.
    Cancelled,
    /// Failed, with a message for the user.
    Failed(String),
}

impl From<String> for JobError {
    fn from(error: String) -> Self {
        JobError::Failed(error)
    }
}

impl From<EngineError> for JobError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Cancelled => JobError::Cancelled,
            other => JobError::Failed(other.to_string()),
        }
    }
}

fn load(dir: &std::path::Path, device: &Device) -> Result<DiffusionModel, String> {
    DiffusionModel::load(dir, device).map_err(|e| format!("cannot load model: {e}"))
}

fn generate(
    state: &mut State,
    id: JobId,
    job: &GenerateJob,
    is_stale: &dyn Fn() -> bool,
    send: &dyn Fn(Event),
    started: Instant,
) -> Result<(), JobError> {
    let State {
        model: Some(model),
        resolver,
        ..
    } = state
    else {
        return Err(JobError::Failed("no model is loaded".into()));
    };
    let model: &DiffusionModel = model;
    let mut run = || -> Result<Picture, EngineError> {
        pipeline::validate(model, &job.params)?;
        let conditioning = match &job.point {
            Some(point) => resolver.resolve(model, point)?,
            None => resolver.prompt(model, &job.prompt)?,
        }
        .unsqueeze(0)
        .map_err(|e| EngineError::InvalidRequest(format!("conditioning: {e}")))?;
        // The noise of the seed itself, or a point of noise space around it, exactly as a
        // tile of the same recipe starts (see `navigator::render_item`).
        let initial = match job.noise.as_deref() {
            None => pipeline::initial_noise(model, job.seed, &job.params)?,
            Some(noise) => resolve_noise(model, Some(noise), job.seed, &job.params)?
                .unsqueeze(0)
                .map_err(|e| EngineError::InvalidRequest(format!("initial noise: {e}")))?,
        };

        // The first preview is the noise itself, so the picture appears at once.
        send_preview(model, id, &initial, send);
        let mut on_step = |p: &pipeline::StepProgress| {
            if is_stale() {
                return false;
            }
            send(Event::Progress {
                id,
                step: p.step,
                num_steps: p.num_steps,
            });
            send_preview(model, id, p.latents, send);
            true
        };
        let mut pictures = pipeline::generate(
            model,
            &conditioning,
            &initial,
            &[job.seed],
            &job.params,
            &mut on_step,
        )?;
        pictures
            .pop()
            .ok_or_else(|| EngineError::InvalidRequest("no picture came out".into()))
    };
    let picture = run()?;
    let recipe = Recipe {
        non_finite: picture.non_finite,
        point: job.point.clone(),
        noise: job.noise.clone(),
        edits: job.edits.clone(),
        ..Recipe::for_prompt(
            model.id.clone(),
            job.prompt.clone(),
            job.seed,
            job.params.clone(),
        )
    };
    send(Event::Finished {
        id,
        picture,
        recipe,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    Ok(())
}

/// Makes a [`TilesJob`]'s pictures in batches, a tile event each, and scores them.
fn tiles(
    state: &mut State,
    id: JobId,
    job: TilesJob,
    is_stale: &dyn Fn() -> bool,
    send: &dyn Fn(Event),
    started: Instant,
) -> Result<(), JobError> {
    let State {
        model: Some(model),
        applied,
        cache,
        resolver,
        scorer,
        ..
    } = state
    else {
        return Err(JobError::Failed("no model is loaded".into()));
    };
    if let Some(other) = job.recipes.iter().find(|r| r.model != model.id) {
        return Err(JobError::Failed(format!(
            "a tile was asked of model {} but {} is loaded",
            other.model.name, model.id.name
        )));
    }
    let Some(first) = job.recipes.first() else {
        send(Event::TilesDone {
            id,
            count: 0,
            elapsed_ms: 0,
        });
        return Ok(());
    };
    let batch = default_batch_size(model, &first.sampling);
    let total = job.recipes.len();
    let scorer = if job.score { scorer.as_deref() } else { None };
    let mut done = 0;
    let mut on_tile = |index: usize, picture: &Picture| {
        if is_stale() {
            return false;
        }
        let scores = scorer.and_then(|s| match s.scores(std::slice::from_ref(picture)) {
            Ok(mut rows) => rows.pop(),
            Err(error) => {
                tracing::warn!("tile not scored: {error}");
                None
            }
        });
        let recipe = Recipe {
            non_finite: picture.non_finite,
            ..job.recipes[index].clone()
        };
        done += 1;
        send(Event::Tile {
            id,
            index,
            picture: picture.clone(),
            recipe: Box::new(recipe),
            scores,
        });
        send(Event::Progress {
            id,
            step: done,
            num_steps: total,
        });
        true
    };
    render_recipes(
        model,
        applied,
        resolver,
        cache,
        &job.recipes,
        batch,
        &mut on_tile,
    )?;
    send(Event::TilesDone {
        id,
        count: total,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    Ok(())
}

fn send_preview(model: &DiffusionModel, id: JobId, latents: &Tensor, send: &dyn Fn(Event)) {
    let (frames, scale) = match &model.taesd {
        Some(taesd) => (taesd.preview(latents), taesd.downscale),
        None => (model.latent_rgb.project(latents), 1),
    };
    if let Ok(mut frames) = frames
        && let Some(rgb) = frames.pop()
        && let Ok((_, _, h, w)) = latents.dims4()
    {
        let (h, w) = (h * scale, w * scale);
        send(Event::Preview {
            id,
            frame: Frame {
                width: w,
                height: h,
                rgb,
            },
        });
    }
}
