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
use crate::engine::model::DiffusionModel;
use crate::engine::pipeline::{self, Picture, SamplingParams};
use crate::engine::variant::Variant;
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
    /// The prompt; empty for unconditional generation.
    pub prompt: String,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Steps, guidance, sampler, size.
    pub params: SamplingParams,
}

/// Work for the worker.
#[derive(Debug, Clone)]
pub enum Job {
    /// Load (or switch to) a model folder.
    LoadModel(PathBuf),
    /// Make one picture, streaming previews.
    Generate(GenerateJob),
    /// Panic on purpose: lets tests check that the worker survives.
    #[doc(hidden)]
    Crash,
}

impl Job {
    /// Jobs of the same kind supersede each other.
    fn kind(&self) -> usize {
        match self {
            Job::LoadModel(_) => 0,
            Job::Generate(_) | Job::Crash => 1,
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
#[expect(
    clippy::large_enum_variant,
    reason = "a few events per picture; boxing the finished recipe would buy nothing measurable"
)]
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
    latest: [AtomicU64; 2],
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
            latest: [AtomicU64::new(0), AtomicU64::new(0)],
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

/// The worker thread's loop.
///
/// Each job runs under `catch_unwind`: a panic (a bug, or an assertion deep in candle) becomes a
/// failure event, the model that was in use is dropped, since a panic in the middle of a weight
/// edit could leave it half changed, and the next job starts afresh by loading the last model
/// folder again.
fn run(shared: &Shared, jobs: &Receiver<(JobId, Job)>, events: &Sender<Event>) {
    let mut model: Option<DiffusionModel> = None;
    let mut model_dir = shared.default_model.clone();
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
            run_job(shared, id, job, &mut model, &mut model_dir, &send, started)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(JobError::Cancelled)) => send(Event::Cancelled { id }),
            Ok(Err(JobError::Failed(error))) => send(Event::Failed { id, error }),
            Err(_) => {
                model = None;
                tracing::error!(id, "a job panicked; the model will be loaded again");
                send(Event::Failed {
                    id,
                    error: "the worker crashed; a fresh worker will take the next job".into(),
                });
            }
        }
    }
}

/// Runs one job; `model` and `model_dir` are the worker's state across jobs.
fn run_job(
    shared: &Shared,
    id: JobId,
    job: Job,
    model: &mut Option<DiffusionModel>,
    model_dir: &mut PathBuf,
    send: &dyn Fn(Event),
    started: Instant,
) -> Result<(), JobError> {
    let loaded = |m: &DiffusionModel| Event::ModelLoaded {
        id,
        name: m.id.name.clone(),
        default_size: m.default_size,
        variant: m.variant,
    };
    match job {
        Job::LoadModel(dir) => {
            let m = load(&dir, &shared.device)?;
            send(loaded(&m));
            *model = Some(m);
            *model_dir = dir;
            Ok(())
        }
        Job::Generate(job) => {
            if model.is_none() {
                let m = load(model_dir, &shared.device)?;
                send(loaded(&m));
                *model = Some(m);
            }
            match model {
                Some(m) => generate(m, id, &job, shared, send, started),
                None => Err(JobError::Failed("no model is loaded".into())),
            }
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
    model: &DiffusionModel,
    id: JobId,
    job: &GenerateJob,
    shared: &Shared,
    send: &dyn Fn(Event),
    started: Instant,
) -> Result<(), JobError> {
    let run = || -> Result<Picture, EngineError> {
        pipeline::validate(model, &job.params)?;
        let (conditioning, _) = model.encode_prompts(&[job.prompt.as_str()])?;
        let initial = pipeline::initial_noise(model, job.seed, &job.params)?;

        // The first preview is the noise itself, so the picture appears at once.
        send_preview(model, id, &initial, send);
        let mut on_step = |p: &pipeline::StepProgress| {
            if shared.latest[1].load(Ordering::SeqCst) > id {
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

fn send_preview(model: &DiffusionModel, id: JobId, latents: &Tensor, send: &dyn Fn(Event)) {
    if let Ok(mut frames) = model.latent_rgb.project(latents)
        && let Some(rgb) = frames.pop()
        && let Ok((_, _, h, w)) = latents.dims4()
    {
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
