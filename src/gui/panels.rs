//! What the tabs share: which tab is open, what a panel may read of the app, and the jobs a
//! panel asks the app to submit.

use serde::{Deserialize, Serialize};

use super::jobs::LoadedModel;
use super::settings::GenerateSettings;
use crate::engine::pipeline::SamplingParams;
use crate::recipe::Recipe;
use crate::worker::{GenerateJob, TilesJob};

/// The tabs of the central area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tab {
    /// One picture, forming step by step.
    #[default]
    Picture,
    /// Planes, lines and random points of concept space.
    Navigator,
    /// Knockouts, randomization, noise and scale of the model's weights.
    Minds,
}

impl Tab {
    /// Every tab, in the order shown.
    pub const ALL: [Tab; 3] = [Tab::Picture, Tab::Navigator, Tab::Minds];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Picture => "Picture",
            Tab::Navigator => "Navigator",
            Tab::Minds => "Alien minds",
        }
    }
}

/// What a panel may read of the app while it draws.
pub struct PanelContext<'a> {
    /// The loaded model, once there is one.
    pub model: Option<&'a LoadedModel>,
    /// The generate panel's settings (prompt, seed, steps, guidance, sampler, size).
    pub settings: &'a GenerateSettings,
    /// The edits every picture is made with now.
    pub edits: &'a [crate::engine::surgery::WeightEdit],
    /// Whether a native dialog is open (buttons that open another are disabled).
    pub dialog_open: bool,
    /// The picture texture the settings' pictures stream into (the picture tab shows it).
    pub picture: &'a super::picture_view::PictureView,
    /// The recipe of the last finished picture.
    pub last_recipe: Option<&'a Recipe>,
}

impl PanelContext<'_> {
    /// The sampling parameters of the settings, once a model has set the size.
    pub fn sampling(&self) -> Option<SamplingParams> {
        self.settings.to_job().map(|job| job.params)
    }

    /// The recipe of the settings' own picture with the current edits: the template panels
    /// derive their tiles from.
    pub fn template(&self) -> Option<Recipe> {
        let model = self.model?;
        let job = self.settings.to_job()?;
        Some(Recipe {
            edits: self.edits.to_vec(),
            ..Recipe::for_prompt(model.id.clone(), job.prompt, job.seed, job.params)
        })
    }
}

/// A job a panel wants submitted; the app submits it and tells the panel its id.
#[derive(Debug, Clone)]
pub enum Request {
    /// Pictures for a grid.
    Tiles(TilesJob),
    /// One picture in the picture tab, made while the panel stays open (a slider dragged).
    Generate(GenerateJob),
    /// One picture in the picture tab, which opens (a tile chosen to look at closely).
    Show(GenerateJob),
    /// Save a grid as one mosaic PNG (with each tile's recipe) through a save dialog.
    ExportMosaic(Box<crate::mosaic::Mosaic>),
}
