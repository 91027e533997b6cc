//! Training of the embedded model: a small latent diffusion model in Stable Diffusion's own
//! architecture, and the concept meter, both from Fashion-MNIST.

pub mod checkpoint;
pub mod cli;
pub mod diffusion;
pub mod embedded;
pub mod fashion_mnist;
pub mod meter;
pub mod modules;
