//! What the window knows about the worker's jobs: which ones are current, how far the picture in
//! progress is, the last finished picture, and what the status line says.
//!
//! Pure state driven by worker events, with no egui in it, so its rules (stale events are
//! dropped, a cancelled job is not an error) are tested without a window.

use std::sync::Arc;

use crate::engine::model::ModelId;
use crate::engine::pipeline::Picture;
use crate::engine::surgery::ModuleCatalog;
use crate::engine::variant::Variant;
use crate::recipe::Recipe;
use crate::worker::{Event, Frame, JobId};

/// Where the current work stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Nothing asked yet.
    Idle,
    /// A model folder is being loaded.
    LoadingModel,
    /// A model is loaded and nothing runs.
    Ready,
    /// A picture is being denoised.
    Generating,
    /// The last picture is done.
    Done {
        /// Wall time of the job.
        elapsed_ms: u64,
    },
    /// The last job was superseded or dropped; not an error.
    Cancelled,
    /// The last job failed; the message is for the user.
    Failed(String),
}

/// The model the worker holds.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedModel {
    /// Its name (the folder name).
    pub name: String,
    /// The side of the pictures it was trained for.
    pub default_size: usize,
    /// Which Stable Diffusion it is.
    pub variant: Variant,
    /// Its identity, for recipes.
    pub id: ModelId,
    /// The modules of its text encoder, UNet and VAE, in `Component::ALL` order.
    pub catalogs: Arc<Vec<ModuleCatalog>>,
    /// The concepts its pictures can be scored for (empty: no scorer).
    pub score_labels: Vec<String>,
}

/// A finished picture and what makes it again.
#[derive(Debug, Clone)]
pub struct FinishedPicture {
    /// The decoded picture.
    pub picture: Picture,
    /// Its recipe.
    pub recipe: Recipe,
    /// Wall time of the job.
    pub elapsed_ms: u64,
}

/// What a worker event changes outside the tracker.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A model finished loading: the size settings may follow it.
    ModelLoaded(LoadedModel),
    /// A new preview of the picture in progress.
    Preview(Frame),
    /// The picture is done: see [`JobTracker::finished`].
    Finished,
}

/// The current jobs and what they reported.
#[derive(Debug)]
pub struct JobTracker {
    load_job: Option<JobId>,
    generate_job: Option<JobId>,
    model: Option<LoadedModel>,
    progress: Option<(usize, usize)>,
    status: Status,
    finished: Option<FinishedPicture>,
}

impl Default for JobTracker {
    fn default() -> Self {
        Self {
            load_job: None,
            generate_job: None,
            model: None,
            progress: None,
            status: Status::Idle,
            finished: None,
        }
    }
}

impl JobTracker {
    /// Records a submitted model load; it supersedes any earlier one.
    pub fn start_load(&mut self, id: JobId) {
        self.load_job = Some(id);
        if self.generate_job.is_none() {
            self.status = Status::LoadingModel;
        }
    }

    /// Records a submitted picture of `num_steps` steps; it supersedes any earlier one.
    pub fn start_generate(&mut self, id: JobId, num_steps: usize) {
        self.generate_job = Some(id);
        self.progress = Some((0, num_steps));
        self.status = Status::Generating;
    }

    /// Records a job the worker refused to take (its queue was full or it stopped).
    pub fn refused(&mut self, error: String) {
        self.status = Status::Failed(error);
    }

    /// Applies one worker event; events of jobs that are no longer current are dropped.
    pub fn apply(&mut self, event: Event) -> Option<Outcome> {
        match event {
            // A model also loads again after a crash, for whichever job came next: only a
            // newer load that is still pending makes a load event stale.
            Event::ModelLoaded {
                id,
                name,
                default_size,
                variant,
                model,
                catalogs,
                score_labels,
            } if self.load_job.is_none_or(|load| load == id) || self.is_current(id) => {
                if self.load_job == Some(id) {
                    self.load_job = None;
                    if self.generate_job.is_none() {
                        self.status = Status::Ready;
                    }
                }
                let model = LoadedModel {
                    name,
                    default_size,
                    variant,
                    id: model,
                    catalogs,
                    score_labels,
                };
                self.model = Some(model.clone());
                Some(Outcome::ModelLoaded(model))
            }
            Event::Progress {
                id,
                step,
                num_steps,
            } if self.generate_job == Some(id) => {
                self.progress = Some((step, num_steps));
                None
            }
            Event::Preview { id, frame } if self.generate_job == Some(id) => {
                Some(Outcome::Preview(frame))
            }
            Event::Finished {
                id,
                picture,
                recipe,
                elapsed_ms,
            } if self.generate_job == Some(id) => {
                self.generate_job = None;
                self.status = Status::Done { elapsed_ms };
                self.finished = Some(FinishedPicture {
                    picture,
                    recipe,
                    elapsed_ms,
                });
                Some(Outcome::Finished)
            }
            Event::Cancelled { id } if self.is_current(id) => {
                self.end(id, Status::Cancelled);
                None
            }
            Event::Failed { id, error } if self.is_current(id) => {
                self.end(id, Status::Failed(error));
                None
            }
            _ => None,
        }
    }

    fn is_current(&self, id: JobId) -> bool {
        self.load_job == Some(id) || self.generate_job == Some(id)
    }

    fn end(&mut self, id: JobId, status: Status) {
        if self.load_job == Some(id) {
            self.load_job = None;
        }
        if self.generate_job == Some(id) {
            self.generate_job = None;
            self.progress = None;
        }
        self.status = status;
    }

    /// Where the current work stands.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The loaded model, once one is.
    pub fn model(&self) -> Option<&LoadedModel> {
        self.model.as_ref()
    }

    /// Steps done and steps in the run of the picture in progress or last finished.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.progress
    }

    /// The last finished picture.
    pub fn finished(&self) -> Option<&FinishedPicture> {
        self.finished.as_ref()
    }

    /// Whether a picture is being made.
    pub fn is_generating(&self) -> bool {
        self.generate_job.is_some()
    }

    /// Whether a model folder is being loaded.
    pub fn is_loading(&self) -> bool {
        self.load_job.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            width: 1,
            height: 1,
            rgb: vec![0, 0, 0],
        }
    }

    #[test]
    fn stale_events_are_dropped() {
        let mut jobs = JobTracker::default();
        jobs.start_generate(1, 10);
        jobs.start_generate(2, 10);
        assert!(
            jobs.apply(Event::Preview {
                id: 1,
                frame: frame()
            })
            .is_none()
        );
        assert!(
            jobs.apply(Event::Progress {
                id: 1,
                step: 5,
                num_steps: 10
            })
            .is_none()
        );
        assert_eq!(jobs.progress(), Some((0, 10)));
        jobs.apply(Event::Cancelled { id: 1 });
        assert_eq!(jobs.status(), &Status::Generating);
        assert!(matches!(
            jobs.apply(Event::Preview {
                id: 2,
                frame: frame()
            }),
            Some(Outcome::Preview(_))
        ));
    }

    #[test]
    fn cancelled_is_not_an_error_and_failure_is_reported() {
        let mut jobs = JobTracker::default();
        jobs.start_generate(3, 4);
        jobs.apply(Event::Cancelled { id: 3 });
        assert_eq!(jobs.status(), &Status::Cancelled);
        assert!(!jobs.is_generating());

        jobs.start_generate(4, 0);
        jobs.apply(Event::Failed {
            id: 4,
            error: "steps must be between 1 and 1000".into(),
        });
        assert!(matches!(jobs.status(), Status::Failed(e) if e.contains("steps")));
        assert!(!jobs.is_generating());
    }

    #[test]
    fn loading_a_model_reports_it_without_ending_a_generation() {
        let mut jobs = JobTracker::default();
        jobs.start_load(1);
        assert_eq!(jobs.status(), &Status::LoadingModel);
        let outcome = jobs.apply(Event::ModelLoaded {
            id: 1,
            name: "m".into(),
            default_size: 32,
            variant: Variant::Sd15,
            model: ModelId {
                name: "m".into(),
                weights_hash: "0".into(),
                variant: None,
            },
            catalogs: Arc::default(),
            score_labels: Vec::new(),
        });
        assert!(matches!(outcome, Some(Outcome::ModelLoaded(m)) if m.default_size == 32));
        assert_eq!(jobs.status(), &Status::Ready);

        jobs.start_load(2);
        jobs.start_generate(3, 2);
        jobs.apply(Event::ModelLoaded {
            id: 2,
            name: "n".into(),
            default_size: 64,
            variant: Variant::Sd15,
            model: ModelId {
                name: "n".into(),
                weights_hash: "0".into(),
                variant: None,
            },
            catalogs: Arc::default(),
            score_labels: Vec::new(),
        });
        assert_eq!(jobs.status(), &Status::Generating);
        assert_eq!(jobs.model().map(|m| m.name.as_str()), Some("n"));
    }
}
